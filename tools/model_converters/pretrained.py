"""Download, convert and cache pretrained starts ahead of a run (``mobilenet_tasks://``
addresses; :mod:`mobilenet_tasks.converters.pretrained`).

    python tools/model_converters/pretrained.py \
        mobilenet_tasks://torchvision/mobilenet_v3_large \
        mobilenet_tasks://torchvision/ssdlite320_mobilenet_v3_large

A config that names an address fetches it on first use anyway; this tool does it
beforehand (on a machine with internet, before copying the cache to one without, or
once before a run of many processes) and prints where each converted file is, for
``load_from=PATH`` or ``init_cfg=dict(type='Pretrained', checkpoint=PATH,
prefix='backbone.')``.
"""
import argparse


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Download, convert and cache mobilenet_tasks:// pretrained starts')
    parser.add_argument('addresses', nargs='+', metavar='ADDRESS',
                        help='mobilenet_tasks://torchvision/<model>[.<weights>] or '
                        'mobilenet_tasks://timm/<model>[.<tag>], optionally with '
                        '?url=URL (another place to download from) and &eps=E')
    args = parser.parse_args(argv)

    from mobilenet_tasks.converters.pretrained import PretrainedError, fetch_pretrained
    for address in args.addresses:
        try:
            path = fetch_pretrained(address)
        except PretrainedError as error:
            raise SystemExit(f'error: {error}')
        print(f'{address} -> {path}')


if __name__ == '__main__':
    main()
