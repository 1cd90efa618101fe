"""Install mobilenet_tasks; requirements come from requirements/*.txt."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_requirements(name):
    """Return the requirement lines of ``requirements/<name>.txt``."""
    lines = (HERE / 'requirements' / f'{name}.txt').read_text().splitlines()
    return [ln.split('#')[0].strip() for ln in lines if ln.split('#')[0].strip()]


def read_version():
    text = (HERE / 'mobilenet_tasks' / 'version.py').read_text()
    return re.search(r"__version__ = '([^']+)'", text).group(1)


setup(
    name='mobilenet_tasks',
    version=read_version(),
    description='MobileNetV3 detection and segmentation (SSDLite, LR-ASPP) '
    'for OpenMMLab',
    long_description=(HERE / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests')),
    python_requires='>=3.9',
    install_requires=read_requirements('torch') + read_requirements('runtime'),
    extras_require=dict(
        mim=read_requirements('mminstall'),
        tests=read_requirements('tests'),
        optional=read_requirements('optional'),
        build=read_requirements('build'),
    ),
    license='Apache License 2.0',
    zip_safe=False)
