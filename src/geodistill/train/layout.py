"""The files of one checkpoint folder, named in one place and readable without torch or timm.

``train.checkpoint`` writes and reads them; the platform's storage code (``platform.runtime.remote``,
``platform.search.disk``) only walks folders, in processes (Tune's trial actors, the driver) that
must not pay for importing the model stack.
"""

FORMAT = "geodistill-checkpoint/1"
MODEL_FILE = "model.safetensors"  # the GeoModel's state_dict (what we publish)
STATE_FILE = "train_state.pt"  # optimizer / scheduler / adapters / RNG state, only for resuming
META_FILE = "meta.json"  # written last: its presence marks a complete checkpoint
