"""Where work runs: a loopback-only local Ray head or a cluster, GPU placement, URIs, the training driver.

``ray_local`` starts or joins Ray, ``torch_loopback`` keeps Ray Train's rendezvous on 127.0.0.1,
``gpus`` decides what a trial or worker reserves and sees, ``remote`` reads files on
``s3://``-style URIs, and ``train_driver`` runs ``train.loop.fit`` in this process or on Ray Train.
"""
