"""Print the params and MAdds (conv + linear multiply-adds, mmengine's counter) of a config.

    python tools/analysis_tools/get_flops.py configs/classification/mobilenet-v3-large_8xb128_in1k.py
    python tools/analysis_tools/get_flops.py CONFIG --shape 320 320
"""
import argparse

# Only argparse and mmengine's DictAction here: torch and the models load in main() once
# the arguments are parsed, so --help and an argument error answer at once.
from mmengine.config import DictAction


def parse_args():
    parser = argparse.ArgumentParser(description='Count params and MAdds of a model')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--shape', type=int, nargs=2, metavar=('H', 'W'),
        help='input size; default: the size of the paper table the config builds a '
        'row of (model-index.yml), else 224 224')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value')
    return parser.parse_args()


def main():
    args = parse_args()
    from mobilenet_tasks.analysis.complexity import count_complexity
    from mobilenet_tasks.utils.config import build_model, load_config
    from mobilenet_tasks.utils.model_index import find_entry
    from mobilenet_tasks.utils.paper import paper_figures
    cfg = load_config(args.config, args.cfg_options)
    entry = find_entry(args.config)
    paper = entry.get('Paper') if entry else None
    shape = args.shape
    if shape is None:
        shape = paper_figures(paper['Table'], paper['Row'])[0] if paper else (224, 224)
    result = count_complexity(build_model(cfg), shape)
    print(f'config: {args.config}')
    print(f'input:  {shape[0]}x{shape[1]}')
    print(f'params: {result["params"] / 1e6:.3f} M')
    print(f'MAdds:  {result["madds"] / 1e6:.1f} M  (conv + linear; '
          f'mmengine total flops {result["flops"] / 1e6:.1f} M)')
    if paper:
        _, params, madds = paper_figures(paper['Table'], paper['Row'])
        print(f'paper:  Table {paper["Table"]}, {paper["Row"]}: '
              f'params {params} M, MAdds {madds} M')


if __name__ == '__main__':
    main()
