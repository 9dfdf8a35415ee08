import os
import sys

# Tests run on the CPU with float32, deterministic; a test that needs several devices
# starts a subprocess with JAX_NUM_CPU_DEVICES set.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
