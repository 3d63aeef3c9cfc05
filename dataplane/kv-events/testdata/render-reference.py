# Regenerates llama-3.1-transformers.json: the fixture template rendered by transformers'
# apply_chat_template (the renderer vLLM uses) for a few chat bodies, with the message preprocessing
# vLLM applies first (string content format, tool-call arguments parsed). chat-template.test.ts
# checks the data plane's rendering against these strings.
#   python3 -m venv ~/.cache/infer-gateway/chat-template-venv
#   ~/.cache/infer-gateway/chat-template-venv/bin/pip install transformers==4.46.3 jinja2==3.1.4
#   ~/.cache/infer-gateway/chat-template-venv/bin/python dataplane/kv-events/testdata/render-reference.py
#   npx biome check --write dataplane/kv-events/testdata/llama-3.1-transformers.json
import copy
import json
import os
import tempfile

from transformers import PreTrainedTokenizerFast
from tokenizers import Tokenizer, models

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = open(os.path.join(HERE, "llama-3.1-chat-template.jinja")).read()
TOOLS = [{"type": "function", "function": {"name": "weather", "description": "Weather now",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
BODIES = [
    {"messages": [{"role": "system", "content": "You are a terse assistant."},
                  {"role": "user", "content": "Hi there!"}]},
    {"messages": [{"role": "user", "content": "  Hi  "}, {"role": "assistant", "content": "Hello."},
                  {"role": "user", "content": "What is the weather in Paris?"}]},
    {"messages": [{"role": "system", "content": "Sys"},
                  {"role": "user", "content": "What is the weather in Paris?"},
                  {"role": "assistant", "content": None, "tool_calls": [
                      {"id": "c1", "type": "function",
                       "function": {"name": "weather", "arguments": "{\"city\": \"Paris\", \"n\": 2}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "sunny"}],
     "tools": TOOLS},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"},
                                               {"type": "text", "text": "there"}]}]},
    {"messages": [{"role": "user", "content": "Hi é ü 中文"}], "add_generation_prompt": False},
]


def vllm_messages(body):
    out = []
    for m in copy.deepcopy(body["messages"]):
        if isinstance(m.get("content"), list):
            m["content"] = "\n".join(p["text"] for p in m["content"] if p.get("type") == "text")
        if m.get("content") is None:
            m["content"] = ""
        for tc in m.get("tool_calls", []):
            tc["function"]["arguments"] = json.loads(tc["function"]["arguments"])
        out.append(m)
    return out


tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0}, "[UNK]")),
                              bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
tok.chat_template = TEMPLATE
cases = [{"body": b, "expected": tok.apply_chat_template(
    vllm_messages(b), tools=b.get("tools"), tokenize=False,
    add_generation_prompt=b.get("add_generation_prompt", True))} for b in BODIES]
with open(os.path.join(HERE, "llama-3.1-transformers.json"), "w") as f:
    json.dump({"generator": "transformers 4.46.3, jinja2 3.1.4", "cases": cases}, f,
              ensure_ascii=False, indent=1)
    f.write("\n")
