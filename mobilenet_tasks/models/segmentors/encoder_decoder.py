"""mmseg's EncoderDecoder, with the decode head's channels read from the backbone."""
import copy
import inspect
from typing import List, Union

from mmseg.models.segmentors import EncoderDecoder as MMSegEncoderDecoder
from mmseg.registry import MODELS as MMSEG_MODELS

from mobilenet_tasks.registry import MODELS


@MODELS.register_module()
class EncoderDecoder(MMSegEncoderDecoder):
    """mmseg's ``EncoderDecoder`` that asks the backbone for the heads' channels.

    Everything is mmseg's; this class only fills ``in_channels`` of the decode head
    (and auxiliary heads) when a config leaves it out or sets it to None, from the
    backbone's ``out_channels`` at the head's ``in_index`` (the head class's default
    ``in_index`` when the config gives none). So a config that changes the width,
    the reduced tail (RF2) or the taps of a backbone changes nothing else, as our
    ``SSDLite`` does for detection. Explicit ``in_channels`` are kept and checked.
    With a neck, give ``in_channels`` explicitly (a neck may change the channels).

    Refer to it as ``type='mobilenet_tasks.EncoderDecoder'`` (the bare name in an mmseg
    config is mmseg's own class).

    Args:
        **kwargs: As mmseg's ``EncoderDecoder`` (``backbone``, ``decode_head``,
            ``neck``, ``auxiliary_head``, ``train_cfg``, ``test_cfg``,
            ``data_preprocessor``, ``pretrained``, ``init_cfg``).
    """

    def _init_decode_head(self, decode_head: dict) -> None:
        super()._init_decode_head(self._with_in_channels(decode_head, 'decode_head'))

    def _init_auxiliary_head(self, auxiliary_head: Union[dict, List[dict]]) -> None:
        if isinstance(auxiliary_head, list):
            auxiliary_head = [
                self._with_in_channels(head, f'auxiliary_head[{i}]')
                for i, head in enumerate(auxiliary_head)
            ]
        elif auxiliary_head is not None:
            auxiliary_head = self._with_in_channels(auxiliary_head, 'auxiliary_head')
        super()._init_auxiliary_head(auxiliary_head)

    def _with_in_channels(self, head: dict, name: str) -> dict:
        head = copy.deepcopy(dict(head))
        explicit = head.get('in_channels')
        if explicit is not None and self.with_neck:
            return head
        if self.with_neck:
            raise ValueError(f'{name}.in_channels is needed with a neck: the channels '
                             'cannot be read from the backbone')
        channels = tuple(getattr(self.backbone, 'out_channels', ()))
        if not channels:
            raise ValueError(f'{type(self.backbone).__name__} does not report its '
                             f'`out_channels`; give {name}.in_channels explicitly')
        index = head.get('in_index', _default_in_index(head['type']))
        try:
            wanted = (tuple(channels[i] for i in index) if isinstance(
                index, (list, tuple)) else channels[index])
        except (IndexError, TypeError):
            raise ValueError(f'{name}.in_index={index!r} does not select outputs of '
                             f'the backbone, which emits {len(channels)} feature maps '
                             f'with channels {channels}') from None
        if explicit is None:
            head['in_channels'] = wanted
        elif (tuple(explicit) if isinstance(explicit, (list, tuple)) else
              explicit) != wanted:
            raise ValueError(f'{name}.in_channels={explicit!r} but the backbone emits '
                             f'{wanted!r} at in_index={index!r}: remove '
                             f'{name}.in_channels to take them from the backbone')
        return head


def _default_in_index(head_type) -> Union[int, tuple]:
    """The ``in_index`` a head class uses when its config gives none."""
    cls = head_type if inspect.isclass(head_type) else MMSEG_MODELS.get(head_type)
    if cls is None:
        raise KeyError(f'decode head type {head_type!r} is not registered')
    for klass in cls.__mro__:
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        param = inspect.signature(init).parameters.get('in_index')
        if param is not None and param.default is not inspect.Parameter.empty:
            return param.default
    return -1
