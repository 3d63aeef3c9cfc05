# Encodes and decodes vLLM KV-event batches with msgspec, using the Struct definitions of
# vllm/distributed/kv_events.py, and computes vLLM's sha256_cbor block hashes with cbor2, for
# test/kv-events-msgspec.test.ts. Input (stdin, JSON): {"decode": hex payload written by our encoder,
# "tokens": [ids], "block_size": n, "seed": "PYTHONHASHSEED", "extra": null | [..]}.
# Output (stdout, JSON): our payload as msgspec reads it, msgspec-written payloads, and the hashes.
import hashlib
import json
import sys
from typing import Any, Optional, Union

import cbor2
import msgspec

ExternalBlockHash = Union[bytes, int]


class EventBatch(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
    ts: float
    events: list[Any]
    data_parallel_rank: Optional[int] = None


class KVCacheEvent(msgspec.Struct, array_like=True, omit_defaults=True, gc=False, tag=True):
    """Base class for all KV cache-related events"""


class BlockStored(KVCacheEvent):
    block_hashes: list[ExternalBlockHash]
    parent_block_hash: Optional[ExternalBlockHash]
    token_ids: list[int]
    block_size: int
    lora_id: Optional[int]
    medium: Optional[str]


class BlockRemoved(KVCacheEvent):
    block_hashes: list[ExternalBlockHash]
    medium: Optional[str]


class AllBlocksCleared(KVCacheEvent):
    pass


class KVEventBatch(EventBatch):
    events: list[Union[BlockStored, BlockRemoved, AllBlocksCleared]]


def sha256_cbor(x: Any) -> bytes:
    return hashlib.sha256(cbor2.dumps(x, canonical=True)).digest()


def exact(v: Any) -> Any:
    """JSON numbers lose 64-bit ints in JavaScript: big ones go as decimal strings."""
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**53:
        return str(v)
    if isinstance(v, list):
        return [exact(x) for x in v]
    return v


def main() -> None:
    req = json.load(sys.stdin)
    enc = msgspec.msgpack.Encoder()
    dec = msgspec.msgpack.Decoder(type=KVEventBatch)

    theirs = dec.decode(bytes.fromhex(req["decode"]))
    read_back = {
        "ts": theirs.ts,
        "rank": theirs.data_parallel_rank,
        "events": [
            {"type": type(e).__name__, **{f: exact(getattr(e, f)) for f in e.__struct_fields__}}
            for e in theirs.events
        ],
    }

    big = (1 << 64) - 3
    batches = [
        KVEventBatch(
            ts=1700000000.25,
            events=[
                BlockStored(
                    block_hashes=[big, 12345, 1 << 40],
                    parent_block_hash=None,
                    token_ids=list(range(48)),
                    block_size=16,
                    lora_id=None,
                    medium="GPU",
                ),
                BlockRemoved(block_hashes=[12345], medium="GPU"),
            ],
        ),
        KVEventBatch(
            ts=2.0,
            events=[
                BlockStored(
                    block_hashes=[hashlib.sha256(b"x").digest()],
                    parent_block_hash=big,
                    token_ids=[7] * 16,
                    block_size=16,
                    lora_id=3,
                    medium=None,
                ),
                AllBlocksCleared(),
            ],
            data_parallel_rank=2,
        ),
    ]

    # vLLM: NONE_HASH = hash_fn(PYTHONHASHSEED); block = hash_fn((parent, tuple(tokens), extra_keys)).
    tokens, bs = req["tokens"], req["block_size"]
    extra = tuple(req["extra"]) if req["extra"] is not None else None
    parent = sha256_cbor(req["seed"])
    hashes = []
    for b in range(len(tokens) // bs):
        parent = sha256_cbor((parent, tuple(tokens[b * bs : (b + 1) * bs]), extra))
        hashes.append(int.from_bytes(parent[-8:], "big"))

    json.dump(
        {
            "read_back": read_back,
            "payloads": [enc.encode(b).hex() for b in batches],
            "sha_x_tail": hashlib.sha256(b"x").digest()[-8:].hex(),
            "hashes": [str(h) for h in hashes],
        },
        sys.stdout,
        default=lambda o: o.hex() if isinstance(o, bytes) else str(o),
    )


main()
