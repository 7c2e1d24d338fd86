// The official OpenAI TypeScript SDK's chat.completions against a /v1/chat/completions
// endpoint (the gateway, or llmproxy-mockllm directly): create, stream, and a tool-call
// round trip. Env: LLMPROXY_BASE_URL (with /v1), LLMPROXY_KEY, MODEL.
import OpenAI from 'openai';
import { settings, check, expect, done, show } from './common.mjs';

const { baseURL, apiKey, model } = settings('gpt-e2e');
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30000 });
const tools = [
  {
    type: 'function',
    function: {
      name: 'lookup',
      description: 'Looks a query up.',
      parameters: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] },
    },
  },
];
const messages = [{ role: 'user', content: 'Say hi' }];

await check('create_text', async () => {
  const r = await client.chat.completions.create({ model, messages, max_tokens: 64 });
  const text = r.choices[0].message.content;
  expect('create_text', /^tok0 tok1 /.test(text), `content ${show(text)}`);
  expect('create_text', r.choices[0].finish_reason === 'stop', `finish ${r.choices[0].finish_reason}`);
  expect('create_text', r.usage && r.usage.completion_tokens > 0, `usage ${show(r.usage)}`);
});

await check('stream_text', async () => {
  const stream = await client.chat.completions.create({
    model, messages, max_tokens: 64, stream: true, stream_options: { include_usage: true },
  });
  let text = '';
  let deltas = 0;
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    const c = chunk.choices[0];
    if (!c) continue;
    if (c.delta.content) { text += c.delta.content; deltas++; }
    if (c.finish_reason) finish = c.finish_reason;
  }
  expect('stream_text', deltas > 1 && /^tok0 tok1 /.test(text), `${deltas} deltas ${show(text)}`);
  expect('stream_text', finish === 'stop', `finish ${finish}`);
  expect('stream_text', usage && usage.completion_tokens > 0, `usage ${show(usage)}`);
});

let call;
await check('stream_tool_call', async () => {
  const stream = client.chat.completions.stream({ model, messages, tools, max_tokens: 64 });
  let fragments = 0;
  stream.on('tool_calls.function.arguments.delta', () => fragments++);
  const r = await stream.finalChatCompletion();
  const msg = r.choices[0].message;
  call = msg.tool_calls && msg.tool_calls[0];
  expect('stream_tool_call', call && call.function.name === 'lookup', show(msg));
  expect('stream_tool_call', /^tok0 tok1 /.test(JSON.parse(call.function.arguments).q),
    `arguments ${call.function.arguments}`);
  expect('stream_tool_call', fragments > 1, `${fragments} argument deltas`);
  expect('stream_tool_call', r.choices[0].finish_reason === 'tool_calls',
    `finish ${r.choices[0].finish_reason}`);
});

await check('create_tool_result', async () => {
  const r = await client.chat.completions.create({
    model, tools, max_tokens: 64,
    messages: [
      ...messages,
      { role: 'assistant', content: null, tool_calls: [call] },
      { role: 'tool', tool_call_id: call.id, content: 'sunny, 21 C' },
    ],
  });
  expect('create_tool_result', r.choices[0].message.content === 'tool said: sunny, 21 C',
    `content ${show(r.choices[0].message.content)}`);
});

done({ sdk: 'openai-chat', model });
