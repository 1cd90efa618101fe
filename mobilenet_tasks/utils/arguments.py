"""The command-line arguments the tools share, importable before anything heavy.

Nothing here imports torch, mmdet or the models: ``tools/train.py``, ``tools/test.py``
and ``tools/infer.py`` parse their arguments with it first, so ``--help`` and an
argument error answer at once; the rest is imported after.

- :class:`DictAction` reads ``--cfg-options`` ``key=value`` pairs as mmengine's does,
  and ``dict(...)`` values too (mmengine's own recurses without end on them);
  :func:`parse_value` reads one value.
- :func:`add_common_arguments`: ``--cfg-options``, ``--threads``, ``--launcher``,
  ``--local_rank``.
"""
import argparse
import ast
import os

_HINT = ("write dict values with literals (quote strings: dict(type='Pretrained', "
         "checkpoint='x.pth')), or set each key on its own (key.type=Pretrained "
         'key.checkpoint=x.pth)')


def _literal(node, text: str):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):  # True/False/None are Constants; bare words: str
        return node.id
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
            and isinstance(node.operand, ast.Constant) \
            and isinstance(node.operand.value, (int, float)):
        value = node.operand.value
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.List):
        return [_literal(e, text) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e, text) for e in node.elts)
    if isinstance(node, ast.Dict):
        return {_literal(k, text): _literal(v, text)
                for k, v in zip(node.keys, node.values)}
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == 'dict' and not node.args
            and all(k.arg is not None for k in node.keywords)):
        return {k.arg: _literal(k.value, text) for k in node.keywords}
    raise ValueError(f'cannot read {ast.get_source_segment(text, node) or text!r}')


def parse_value(text: str):
    """A ``--cfg-options`` value: ``dict(...)`` (and anything holding one) by the rules
    above, everything else as mmengine's ``DictAction`` reads it.

    Raises:
        ValueError: A ``dict(...)`` value that is not made of literals.
    """
    if 'dict(' not in text.replace(' ', ''):
        from mmengine.config import DictAction as MMEngineDictAction
        return MMEngineDictAction._parse_iterable(text)
    try:
        tree = ast.parse(text.strip(), mode='eval')
    except SyntaxError as e:
        raise ValueError(f'{text!r} is not valid python ({e.msg}); {_HINT}') from e
    try:
        return _literal(tree.body, text)
    except ValueError as e:
        raise ValueError(f'{e} in {text!r}; {_HINT}') from e


class DictAction(argparse.Action):
    """``key=value`` pairs into a dict, as mmengine's ``DictAction``, with ``dict(...)``
    values read (:func:`parse_value`); a bad value is an argument error naming it."""

    def __call__(self, parser, namespace, values, option_string=None):
        options = dict(getattr(namespace, self.dest, None) or {})
        for item in values:
            if '=' not in item:
                raise argparse.ArgumentError(
                    self, f'{item!r} is not key=value (e.g. train_cfg.max_iters=2)')
            key, text = item.split('=', 1)
            try:
                options[key] = parse_value(text)
            except ValueError as e:
                raise argparse.ArgumentError(self, f'{key}: {e}') from None
        setattr(namespace, self.dest, options)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options tools/train.py and tools/test.py share, as OpenMMLab tools name them."""
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value (a key the '
                        'config and the Runner do not know is refused; dict(...) values '
                        'are read)')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads of each process (default: OMP_NUM_THREADS if '
                        'set, else the cores divided by the processes on this machine)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_args_with_local_rank(parser: argparse.ArgumentParser):
    """Parse, and export LOCAL_RANK as torch.distributed.launch users expect."""
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


__all__ = ['DictAction', 'parse_value', 'add_common_arguments',
           'parse_args_with_local_rank']
