"""The machine a benchmark ran on: the CPU, the instruction sets that decide which
kernels the runtimes pick (AVX2, AVX-512, VNNI and AMX int8 dot products), the runtime
versions and the load average."""
import os
import platform
from pathlib import Path
from typing import Dict, List, Optional

# /proc/cpuinfo flags that matter for fp32 and int8 convolution kernels
CPU_FLAGS = ('avx2', 'avx512f', 'avx512_vnni', 'avx_vnni', 'amx_int8')
# version key -> distribution name
RUNTIME_PACKAGES = {'torch': 'torch', 'onnxruntime': 'onnxruntime',
                    'executorch': 'executorch', 'openvino': 'openvino', 'nncf': 'nncf'}


def _cpuinfo() -> str:
    try:
        return Path('/proc/cpuinfo').read_text()
    except OSError:  # pragma: no cover - not Linux
        return ''


def cpu_name(cpuinfo: Optional[str] = None) -> str:
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        if line.startswith('model name'):
            return line.split(':', 1)[1].strip()
    return platform.processor()


def cpu_flags(cpuinfo: Optional[str] = None) -> Optional[Dict[str, bool]]:
    """Each of :data:`CPU_FLAGS`: whether the CPU has it (None: no /proc/cpuinfo)."""
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        if line.startswith('flags'):
            have = set(line.split(':', 1)[1].split())
            return {flag: flag in have for flag in CPU_FLAGS}
    return None


def versions() -> Dict[str, Optional[str]]:
    """The installed version of each runtime (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for key, dist in RUNTIME_PACKAGES.items():
        try:
            out[key] = version(dist)
        except PackageNotFoundError:
            out[key] = None
    return out


def load_average() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def machine_info() -> dict:
    """The report's ``machine`` section, less the load averages."""
    found = versions()
    return dict(cpu=cpu_name(), cpu_flags=cpu_flags(), cpu_count=os.cpu_count(),
                platform=platform.platform(), python=platform.python_version(),
                versions=found, torch=found['torch'], onnxruntime=found['onnxruntime'])
