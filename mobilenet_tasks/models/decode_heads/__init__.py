from .lraspp_head import LRASPPHead
from .raspp_head import RASPPHead

__all__ = ['LRASPPHead', 'RASPPHead']
