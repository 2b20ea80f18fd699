"""Pick the reader named by ``data.format`` and return validated :class:`TwoDomainData`."""

from __future__ import annotations

from urllm.data.config import DataConfig
from urllm.data.schema import TwoDomainData


def load_data_from_config(cfg: DataConfig) -> TwoDomainData:
    if cfg.format == "art_office":
        from urllm.data.art_office import load_art_office

        data = load_art_office(cfg)
    elif cfg.format == "recbole":
        from urllm.data.recbole import load_recbole

        data = load_recbole(cfg)
    elif cfg.format == "amazon":
        from urllm.data.amazon import load_amazon

        data = load_amazon(cfg)
    else:  # guarded by the Literal type of DataConfig.format
        raise ValueError(f"unknown data.format {cfg.format!r}")
    data.validate()
    return data
