"""The model catalog: which VQGAN and CLIP models this server knows and has."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from artgen.api.deps import OwnerDep, SettingsDep

router = APIRouter(prefix="/v1", tags=["models"])


class ModelPublic(BaseModel):
    """One catalog entry."""

    name: str
    available: bool
    default: bool
    description: str


class ModelsPublic(BaseModel):
    """VQGAN autoencoders and CLIP critics."""

    vqgan: list[ModelPublic]
    clip: list[ModelPublic]


def _entry(info: Any, defaults: set[str]) -> ModelPublic:
    name = str(getattr(info, "name", info))
    return ModelPublic(
        name=name,
        available=bool(getattr(info, "available", False)),
        default=name in defaults,
        description=str(getattr(info, "description", "") or ""),
    )


@router.get("/models", response_model=ModelsPublic, summary="List the known models")
async def list_models(settings: SettingsDep, owner: OwnerDep) -> ModelsPublic:
    """VQGAN and CLIP names, whether their weights are here, and the server's defaults."""
    # The catalog imports torch: loaded on the first listing, not with the API's modules.
    from artgen.models.catalog import Catalog

    def read() -> ModelsPublic:
        catalog = Catalog(settings.home)
        vqgan: list[ModelPublic] = []
        clip: list[ModelPublic] = []
        for info in catalog.list_models():
            kind = str(getattr(info, "kind", "vqgan")).lower()
            if kind == "clip":
                clip.append(_entry(info, set(settings.resolved_clip_models)))
            else:
                vqgan.append(_entry(info, {settings.model}))
        return ModelsPublic(vqgan=vqgan, clip=clip)

    return await run_in_threadpool(read)
