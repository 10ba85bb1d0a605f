"""Clusters: the offline checks of launcher YAMLs and KubeRay manifests, and the loopback rehearsal.

``validate`` runs the preparation ``ray up`` runs and KubeRay's schemas without touching a cloud;
``rehearse`` starts a real multi-node Ray cluster on 127.0.0.1 for tests and users; ``loopback``
is the node provider that lets ``ray up`` / ``ray down`` launch ``clusters/rehearsal.yaml`` here.
"""
