# SGLang's KV-event variant, for test/kv-events-sglang.test.ts: the Struct definitions of
# sglang/srt/disaggregation/kv_events.py (array_like, omit_defaults, tagged; `medium` optional with
# default None, no data-parallel rank in the batch) encoded and decoded by msgspec from PyPI, and
# SGLang's page hashes computed as sglang/srt/mem_cache does (get_hash_str: sha256 of the prior
# digest and each token id as 4 little-endian bytes; hash_str_to_int64: the first 16 hex digits as
# a signed int64). Input (stdin, JSON): {"decode": hex payload written by our encoder, "tokens":
# [ids], "page_size": n}. Output (stdout, JSON): that payload as msgspec reads it, msgspec-written
# payloads, and the page hashes.
import hashlib
import json
import sys
from typing import Any, List, Optional, Union

import msgspec


class EventBatch(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
    ts: float
    events: list[Any]


class KVCacheEvent(msgspec.Struct, array_like=True, omit_defaults=True, gc=False, tag=True):
    """Base class for all KV cache-related events"""


class BlockStored(KVCacheEvent):
    block_hashes: list[int]
    parent_block_hash: Optional[int]
    token_ids: list[int]
    block_size: int
    lora_id: Optional[int]
    medium: Optional[str] = None


class BlockRemoved(KVCacheEvent):
    block_hashes: list[int]
    medium: Optional[str] = None


class AllBlocksCleared(KVCacheEvent):
    pass


class KVEventBatch(EventBatch):
    events: list[Union[BlockStored, BlockRemoved, AllBlocksCleared]]


def exact(v: Any) -> Any:
    """JSON numbers lose 64-bit ints in JavaScript: big ones go as decimal strings."""
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**53:
        return str(v)
    if isinstance(v, list):
        return [exact(x) for x in v]
    return v


def get_hash_str(token_ids: List[int], prior_hash: Optional[str] = None) -> str:
    hasher = hashlib.sha256()
    if prior_hash:
        hasher.update(bytes.fromhex(prior_hash))
    for t in token_ids:
        hasher.update(t.to_bytes(4, byteorder="little", signed=False))
    return hasher.hexdigest()


def hash_str_to_int64(hash_str: str) -> int:
    v = int(hash_str[:16], 16)
    return v - 2**64 if v >= 2**63 else v


def main() -> None:
    req = json.load(sys.stdin)
    enc = msgspec.msgpack.Encoder()
    dec = msgspec.msgpack.Decoder(type=KVEventBatch)

    theirs = dec.decode(bytes.fromhex(req["decode"]))
    read_back = {
        "ts": theirs.ts,
        "events": [
            {"type": type(e).__name__, **{f: exact(getattr(e, f)) for f in e.__struct_fields__}}
            for e in theirs.events
        ],
    }

    tokens, ps = req["tokens"], req["page_size"]
    hashes = []
    prior = None
    for start in range(0, len(tokens) - len(tokens) % ps, ps):
        prior = get_hash_str(tokens[start : start + ps], prior)
        hashes.append(hash_str_to_int64(prior))

    batches = [
        KVEventBatch(
            ts=1700000000.5,
            events=[
                BlockStored(
                    block_hashes=[hashes[0]],
                    parent_block_hash=None,
                    token_ids=tokens[0:ps],
                    block_size=ps,
                    lora_id=None,
                ),
                BlockStored(
                    block_hashes=[hashes[1]],
                    parent_block_hash=hashes[0],
                    token_ids=tokens[ps : 2 * ps],
                    block_size=ps,
                    lora_id=None,
                    medium="GPU",
                ),
                BlockStored(
                    block_hashes=[-(2**63), 2**63 - 1],
                    parent_block_hash=None,
                    token_ids=[1],
                    block_size=1,
                    lora_id=None,
                    medium="CPU_PINNED",
                ),
                BlockRemoved(block_hashes=[hashes[1]]),
                AllBlocksCleared(),
            ],
        )
    ]

    json.dump(
        {
            "read_back": read_back,
            "payloads": [enc.encode(b).hex() for b in batches],
            "hashes": [str(h) for h in hashes],
        },
        sys.stdout,
        default=str,
    )


main()
