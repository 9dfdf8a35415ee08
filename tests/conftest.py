import os
import sys
import tempfile

# Tests run on the CPU with float32, deterministic; a test that needs several devices
# starts a subprocess with JAX_NUM_CPU_DEVICES set.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The suite compiles many small programs and runs each briefly: without LLVM's backend
# optimisations XLA:CPU compiles about 3x faster (the suite runs about 15-30% faster).
# Numbers are compared with tolerances, and bitwise checks compare two runs made
# under the same flags. Set XLA_FLAGS yourself to override.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
# Subprocess tests (kill and resume, the benchmarks' CLIs) compile the same programs
# again: a persistent compilation cache for this session only lets them reuse them.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      tempfile.mkdtemp(prefix="genjax-tests-jax-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
