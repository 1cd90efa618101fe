"""One clear message when the installed OpenMMLab stack is not the one we support."""
from importlib import metadata

from packaging.version import Version

# distribution name -> (lowest supported, first unsupported)
SUPPORTED = {
    'mmcv': ('2.0.0', '2.2.0'),
    'mmengine': ('0.10.0', '1.0.0'),
    'mmdet': ('3.3.0', '3.4.0'),
    'mmsegmentation': ('1.2.2', '1.3.0'),
}
# Checked only where installed: the classification configs need it, nothing else does.
OPTIONAL = {
    'mmpretrain': ('1.2.0', '1.3.0'),
}


def check_dependencies(installed=None):
    """Raise ImportError naming every unsupported or missing package.

    Args:
        installed (dict, optional): distribution name -> version string, for testing;
            by default the versions installed in this environment.
    """
    problems = []
    for name, (low, high) in {**SUPPORTED, **OPTIONAL}.items():
        if installed is not None:
            found = installed.get(name)
        else:
            try:
                found = metadata.version(name)
            except metadata.PackageNotFoundError:
                found = None
        if found is None and name in OPTIONAL:
            continue
        if found is None:
            problems.append(f'{name} is not installed (need >={low},<{high})')
        elif not Version(low) <= Version(found) < Version(high):
            problems.append(f'{name} {found} is installed (need >={low},<{high})')
    if problems:
        raise ImportError(
            'mobilenet_tasks cannot run with this OpenMMLab stack: ' +
            '; '.join(problems) + '. Run `make setup` in the mobilenet_tasks checkout '
            '(it installs the pinned versions into .venv), or install the versions '
            'listed in requirements/mminstall.txt.')
