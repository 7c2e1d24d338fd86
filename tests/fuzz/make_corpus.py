#!/usr/bin/env python3
"""Writes the seed corpora in tests/fuzz/corpus/<target>/ (checked in; rerun after editing).

Seeds are small and real: requests as clients send them, bodies as SDKs write them, SSE
streams with every line-ending style, the repository's YAML files. The fuzzers add their
findings to a copy under build-fuzz/, never here (docs/fuzzing.md)."""
import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(ROOT))
CORPUS = os.path.join(ROOT, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


BODIES = {
    "chat": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]},
    "stream": {"model": "gpt-4o", "stream": True,
               "messages": [{"role": "system", "content": "be brief"},
                            {"role": "user", "content": "Say \"hi\"\n"}]},
    "stream_options": {"model": "m", "stream": True, "stream_options": {"include_usage": True}},
    "stream_options_false": {"stream": True, "stream_options": {"include_usage": False, "x": [1]}},
    "no_model": {"messages": [], "temperature": 0.5, "max_tokens": 16, "stop": None},
    "completions": {"model": "text-davinci", "prompt": ["a", "b"], "n": 2, "logprobs": 1e-3},
    "embeddings": {"model": "text-embedding-3-small", "input": "caf\u00e9 \u2603 \U0001F600"},
    "tools": {"model": "auto", "tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}],
        "tool_choice": "auto", "stream": False},
}
RAW_BODIES = {
    "empty_object": "{}",
    "ws_object": " \r\n\t{ \n } \n",
    "escaped_model": '{"mod\\u0065l":"gpt\\u002d4o\\ud83d\\ude00\\/x","stream":null}',
    "escapes": '{"model":"a\\"b\\\\c\\n\\t\\b\\f\\r","content":"\\u00e9"}',
    "numbers": '{"a":-0,"b":1.5e+10,"c":-12.25E-3,"d":[0,1,2],"model":"x"}',
    "duplicate_model": '{"model":"m1","model":"m2"}',
    "case_variant": '{"model":"m1","MODEL":"m2"}',
    "model_not_string": '{"model":5}',
    "stream_not_bool": '{"model":"m","stream":"yes"}',
    "array": "[1,2,3]",
    "null": "null",
    "truncated": '{"model":"gpt-4o","messages":[{"role":"user","content":"hi',
    "trailing": '{"model":"m"} x',
    "deep": '{"a":' + "[" * 40 + "]" * 40 + ',"model":"m"}',
}


def bodies():
    out = {}
    for name, obj in BODIES.items():
        out[name] = json.dumps(obj)
        out[name + "_compact"] = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    out.update(RAW_BODIES)
    return out


def request(body, target="/v1/chat/completions", extra="", version="1.1", method="POST"):
    head = f"{method} {target} HTTP/{version}\r\nHost: localhost:8080\r\n"
    head += "Authorization: Bearer sk-test\r\nContent-Type: application/json\r\n" + extra
    return head + f"Content-Length: {len(body.encode())}\r\n\r\n" + body


def chunked(body, sizes, extra="", trailer=""):
    head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer k\r\n"
            "Transfer-Encoding: chunked\r\n" + extra + "\r\n")
    data = body.encode()
    out = head.encode()
    i = 0
    for n in sizes:
        piece = data[i:i + n]
        if not piece:
            break
        out += f"{len(piece):x}".encode() + (b";ext=1" if n == 3 else b"") + b"\r\n" + piece + b"\r\n"
        i += n
    if i < len(data):
        out += f"{len(data) - i:X}\r\n".encode() + data[i:] + b"\r\n"
    return out + b"0\r\n" + trailer.encode() + b"\r\n"


def requests():
    b = bodies()
    write("request", "chat", request(b["chat"]))
    write("request", "stream", request(b["stream"], extra="Accept: text/event-stream\r\n"))
    write("request", "completions", request(b["completions"], target="/v1/completions"))
    write("request", "embeddings", request(b["embeddings"], target="/v1/embeddings"))
    write("request", "health", "GET /health HTTP/1.1\r\nHost: h\r\n\r\n")
    write("request", "head_health", "HEAD /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    write("request", "models", "GET /v1/models HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer k\r\n\r\n")
    write("request", "options", "OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: h\r\n"
          "Origin: http://x\r\nAccess-Control-Request-Method: POST\r\n\r\n")
    write("request", "http10", request(b["chat"], version="1.0", extra="Connection: keep-alive\r\n"))
    write("request", "absolute_form", request(b["chat"], target="http://localhost/v1/chat/completions"))
    write("request", "expect", request(b["chat"], extra="Expect: 100-continue\r\n"))
    write("request", "pipelined", request(b["chat"]) + request(b["stream"]) +
          "GET /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    write("request", "chunked", chunked(b["stream"], [1, 3, 7, 16, 64]))
    write("request", "chunked_trailer", chunked(b["chat"], [10], trailer="X-Trailer: t\r\n"))
    write("request", "chunked_pipelined", chunked(b["chat"], [5, 5]) + request(b["no_model"]).encode())
    write("request", "te_gzip_chunked", chunked(b["chat"], [8], extra="Transfer-Encoding: gzip\r\n"))
    write("request", "cl_and_te", chunked(b["chat"], [8], extra="Content-Length: 4\r\n"))
    write("request", "two_hosts", request(b["chat"], extra="Host: other\r\n"))
    write("request", "many_headers", request(b["chat"], extra="".join(
        f"X-H{i}: {'v' * (i * 7)}\r\n" for i in range(40))))
    write("request", "bad_json", request(b["truncated"]))
    write("request", "case_variant", request(b["case_variant"]))


def sse_input(stream, cuts=(), flags=0, limit=64):
    return struct.pack(">BHB", flags, limit, len(cuts)) + bytes(cuts) + stream.encode()


def sse():
    chunk1 = ('data: {"id":"c1","choices":[{"index":0,"delta":{"content":"Hel"}}],'
              '"usage":null}')
    chunk2 = 'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"lo\\n\\n"}}]}'
    usage = ('data: {"id":"c1","choices":[],"usage":{"prompt_tokens":12,'
             '"completion_tokens":34,"total_tokens":46}}')
    done = "data: [DONE]"
    events = [": keep-alive", chunk1, chunk2, usage, done]
    write("sse_parser", "lf", sse_input("\n\n".join(events) + "\n\n", (5, 30, 1, 1, 60)))
    write("sse_parser", "crlf", sse_input("\r\n\r\n".join(events) + "\r\n\r\n", (2, 2, 70, 3)))
    write("sse_parser", "cr", sse_input("\r\r".join(events) + "\r\r", (10, 40)))
    write("sse_parser", "mixed", sse_input(
        chunk1 + "\n\n" + chunk2 + "\r\n\r\n" + usage + "\r\r" + done + "\n\r\n", (50, 50, 50)))
    write("sse_parser", "fields", sse_input(
        "event: message\nid: 7\nretry: 100\ndata: {\"choices\":[],\ndata: \"usage\":"
        "{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n" + done + "\n\n", (1,) * 15))
    write("sse_parser", "usage_with_choices", sse_input(
        'data: {"choices":[{"delta":{}}],"usage":{"prompt_tokens":3}}\n\n', (9,)))
    write("sse_parser", "unterminated_done", sse_input(chunk1 + "\n\n" + done, (100,)))
    write("sse_parser", "large_event", sse_input(
        "data: " + "x" * 3000 + "\n\n" + usage + "\n\n", (10, 200, 200, 200), flags=0x80, limit=100))
    write("sse_parser", "blank_lines", sse_input("\n\n\n\r\n\r\n\n" + done + "\n\n\n"))
    write("sse_parser", "no_space", sse_input('data:[DONE]\n\ndata:{"usage":{"completion_tokens":9}}\n\n'))


def chat_input(stream, cuts=(), flags=0):
    return struct.pack(">BB", flags, len(cuts)) + bytes(cuts) + stream.encode()


def chat():
    def chunk(delta, finish="null", cid="chatcmpl-b-9", created=1700000999, extra=""):
        return ('data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":"m",'
                '"choices":[{"index":0,"delta":%s%s,"finish_reason":%s}]}' %
                (cid, created, delta, extra, finish))
    usage = ('data: {"id":"chatcmpl-b-9","choices":[],"usage":{"prompt_tokens":9,'
             '"completion_tokens":2,"total_tokens":11}}')
    done = "data: [DONE]"
    mock = [chunk('{"role":"assistant","content":""}'), chunk('{"role":"assistant","content":"k2 "}'),
            chunk('{"content":"tok3 "}', '"stop"'), usage, ": bye", done]
    write("chat_stream", "mock_continuation", chat_input("\n\n".join(mock) + "\n\n", (40, 90, 3)))
    write("chat_stream", "mock_crlf", chat_input("\r\n\r\n".join(mock) + "\r\n\r\n", (1, 200)))
    write("chat_stream", "mock_cr", chat_input("\r\r".join(mock) + "\r\r", (120,)))
    openai = [chunk('{"role":"assistant","content":"","refusal":null}', extra=',"logprobs":null'),
              chunk('{"content":"caf\\u00e9 \\ud83d\\ude00 \\"q\\""}'), chunk('{}', '"stop"'), done]
    write("chat_stream", "openai", chat_input("\n\n".join(openai) + "\n\n", (7, 7, 7)))
    deepseek = [chunk('{"role":"assistant","content":null,"reasoning_content":""}'),
                chunk('{"content":null,"reasoning_content":"Okay"}'),
                chunk('{"content":"Hi","reasoning_content":null}'), done]
    write("chat_stream", "deepseek", chat_input("\n\n".join(deepseek) + "\n\n", (60,)))
    tools = [chunk('{"role":"assistant","tool_calls":[{"index":0,"id":"call_1","type":"function",'
                   '"function":{"name":"f","arguments":""}}]}'),
             chunk('{"tool_calls":[{"index":0,"function":{"arguments":"{\\"a\\":1}"}}]}'),
             chunk('{}', '"tool_calls"'), done]
    write("chat_stream", "tool_calls", chat_input("\n\n".join(tools) + "\n\n"))
    write("chat_stream", "n2", chat_input(
        'data: {"id":"c","choices":[{"index":1,"delta":{"role":"assistant","content":"B"}},'
        '{"delta":{"content":"A"},"index":0}]}\n\n' + done + "\n\n"))
    write("chat_stream", "multiline_fields", chat_input(
        'id: 3\nevent: message\ndata: {"id":"x",\ndata: "choices":[{"delta":{"role":"assistant",'
        '"content":"y"}}]}\n\n: ping\n\ndata: {"error":{"message":"overloaded"}}\n\n', (1,) * 15))
    write("chat_stream", "malformed", chat_input(
        'data: {"choices":[{"delta":{"content":"x"}}]\n\ndata: {"choices":[{"index":"0",'
        '"delta":{"role":"a","role":"b","content":"\\ud83d"}}]}\n\ndata: 42\n\n'))
    write("chat_stream", "request_body", chat_input(
        '{"model":"m","note":"\\"messages\\":[]","messages":[{"role":"user","content":"a ]"}],'
        '"stream":true}'))


def responses_input(data, cuts=(), status=0):
    return struct.pack(">BB", status, len(cuts)) + bytes(cuts) + data.encode()


def responses():
    # Requests as Codex CLI and the SDKs send them, then chat answers, errors and streams.
    codex = {"model": "gpt-5-codex", "instructions": "You are Codex.",
             "input": [{"type": "message", "role": "developer",
                        "content": [{"type": "input_text", "text": "<permissions/>"}]},
                       {"type": "message", "role": "user",
                        "content": [{"type": "input_text", "text": "list files"}]}],
             "tools": [{"type": "function", "name": "shell", "strict": False,
                        "parameters": {"type": "object", "properties": {
                            "command": {"type": "array", "items": {"type": "string"}}}}},
                       {"type": "web_search", "external_web_access": False}],
             "tool_choice": "auto", "parallel_tool_calls": False,
             "reasoning": {"effort": "medium", "summary": "auto"}, "store": False, "stream": True,
             "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k"}
    write("responses_translate", "codex_request", responses_input(json.dumps(codex)))
    history = {"input": [
        {"role": "user", "content": "hi"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gA"},
        {"type": "function_call", "call_id": "call_1", "name": "ls", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1",
         "output": [{"type": "input_text", "text": "a"}]},
        {"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,AA"}]}],
        "text": {"format": {"type": "json_schema", "name": "n", "schema": {}, "strict": True}},
        "tool_choice": {"type": "function", "name": "ls"}, "max_output_tokens": 9}
    write("responses_translate", "history_request", responses_input(json.dumps(history), (30, 30)))
    write("responses_translate", "stateful_request",
          responses_input('{"input":"x","previous_response_id":"resp_1","metadata":{}}'))
    write("responses_translate", "chat_answer", responses_input(json.dumps(
        {"id": "chatcmpl-1", "created": 1, "model": "m", "choices": [{"index": 0, "message": {
            "role": "assistant", "content": "Hi", "reasoning_content": "hm", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            "finish_reason": "length"}],
         "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                   "prompt_tokens_details": {"cached_tokens": 1}}})))
    write("responses_translate", "error_openai", responses_input(
        '{"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit"}}',
        status=6))
    write("responses_translate", "error_text", responses_input("<html>502 Bad Gateway</html>", status=8))

    def chunk(delta, finish="null"):
        return ('data: {"id":"chatcmpl-s","object":"chat.completion.chunk","created":1,"model":"m",'
                '"choices":[{"index":0,"delta":%s,"finish_reason":%s}]}' % (delta, finish))
    usage = 'data: {"id":"chatcmpl-s","choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3}}'
    done = "data: [DONE]"
    text = [chunk('{"role":"assistant","content":""}'), chunk('{"content":"Hel"}'),
            chunk('{"content":"lo"}'), chunk('{}', '"stop"'), usage, done]
    write("responses_translate", "stream_text", responses_input("\n\n".join(text) + "\n\n", (40, 90)))
    write("responses_translate", "stream_text_crlf",
          responses_input("\r\n\r\n".join(text) + "\r\n\r\n", (1, 200)))
    tools = [chunk('{"role":"assistant","tool_calls":[{"index":0,"id":"call_1","type":"function",'
                   '"function":{"name":"f","arguments":""}}]}'),
             chunk('{"tool_calls":[{"index":0,"function":{"arguments":"{\\"a\\":"}}]}'),
             chunk('{"tool_calls":[{"index":1,"id":"call_2","function":{"name":"g","arguments":"1}"}}]}'),
             chunk('{}', '"tool_calls"'), done]
    write("responses_translate", "stream_tools", responses_input("\n\n".join(tools) + "\n\n", (7, 7, 7)))
    reasoning = [chunk('{"reasoning_content":"Think"}'), chunk('{"content":"Hi","reasoning_content":null}'),
                 chunk('{}', '"length"'), ": bye", done]
    write("responses_translate", "stream_reasoning", responses_input("\r\r".join(reasoning) + "\r\r", (120,)))
    write("responses_translate", "stream_error", responses_input(
        chunk('{"content":"a"}') + '\n\ndata: {"error":{"message":"overloaded","code":"server_error"}}\n\n'
        'data: {"choices":[\n\ndata: 42\n\n'))


def configs():
    for path in ["config.yaml", "tests/testdata/full.yaml", "tests/testdata/minimal.yaml",
                 "tests/testdata/many_errors.yaml", "tests/testdata/original_sample.yaml",
                 "deploy/k8s/configmap.yaml"]:
        src = os.path.join(REPO, path)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(CORPUS, "config_loader", path.replace("/", "_")))
    write("config_loader", "env_refs", "server:\n  port: ${PORT}\nauth:\n  keys: [${OPENAI_API_KEY}]\n"
          "backends:\n  - name: a\n    url: https://api.openai.com/v1\n    api_key: ${OPENAI_API_KEY}\n"
          "    models: [gpt-4o]\n")
    write("config_loader", "flow", "{server: {port: 1}, backends: [{name: b, url: 'http://h:1', "
          "models: [m], weight: 0}], retry: -1, timeout: 1m30s}\n")
    write("config_loader", "anchors", "x: &a {name: n, url: 'http://h', models: [m]}\n"
          "backends: [*a, *a]\nmode: round_robin\n")


def main():
    # Files are overwritten, never deleted: reproducers of past findings (corpus/<target>/
    # repro-*) stay.
    os.makedirs(os.path.join(CORPUS, "config_loader"), exist_ok=True)
    requests()
    for name, body in bodies().items():
        write("request_body", name, body)
    sse()
    chat()
    responses()
    configs()


if __name__ == "__main__":
    main()
