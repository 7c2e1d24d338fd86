// The official Anthropic TypeScript SDK against an Anthropic Messages endpoint (the gateway,
// or llmproxy-mockllm directly): text, a tool round trip, streams with and without a tool,
// count_tokens and a scripted 429. Expects the mock's answers ("tok0 tok1 ...", tool input
// {"q": ...}, "tool said: ..."). Env: LLMPROXY_BASE_URL (no /v1), LLMPROXY_KEY, MODEL.
import Anthropic from '@anthropic-ai/sdk';
import { settings, check, expect, done, show } from './common.mjs';

const { baseURL, apiKey, model } = settings('claude-e2e');
const client = new Anthropic({ baseURL, apiKey, maxRetries: 0, timeout: 30000 });
const tools = [
  {
    name: 'lookup',
    description: 'Looks a query up.',
    input_schema: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] },
  },
];
const ask = [{ role: 'user', content: 'Say hi' }];
const textOf = (msg) => msg.content.filter((b) => b.type === 'text').map((b) => b.text).join('');

await check('create_text', async () => {
  const msg = await client.messages.create({ model, max_tokens: 64, messages: ask });
  expect('create_text', msg.type === 'message' && msg.role === 'assistant', show(msg));
  expect('create_text', /^tok0 tok1 /.test(textOf(msg)), `text ${show(textOf(msg))}`);
  expect('create_text', msg.stop_reason === 'end_turn', `stop_reason ${msg.stop_reason}`);
  expect('create_text', msg.usage.output_tokens > 0, `usage ${show(msg.usage)}`);
});

let toolUse;
await check('create_tool_use', async () => {
  const msg = await client.messages.create({ model, max_tokens: 64, messages: ask, tools });
  expect('create_tool_use', msg.stop_reason === 'tool_use', `stop_reason ${msg.stop_reason}`);
  toolUse = msg.content.find((b) => b.type === 'tool_use');
  expect('create_tool_use', toolUse && toolUse.name === 'lookup', show(msg.content));
  expect('create_tool_use', typeof toolUse.input.q === 'string' && /^tok0 /.test(toolUse.input.q),
    `input ${show(toolUse.input)}`);
  expect('create_tool_use', typeof toolUse.id === 'string' && toolUse.id.length > 0, 'no id');
});

await check('create_tool_result', async () => {
  const msg = await client.messages.create({
    model, max_tokens: 64, tools,
    messages: [
      ...ask,
      { role: 'assistant', content: [toolUse] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: toolUse.id, content: 'sunny, 21 C' }] },
    ],
  });
  expect('create_tool_result', textOf(msg) === 'tool said: sunny, 21 C', `text ${show(textOf(msg))}`);
  expect('create_tool_result', msg.stop_reason === 'end_turn', `stop_reason ${msg.stop_reason}`);
});

await check('stream_tool_use', async () => {
  let jsonDeltas = 0;
  const stream = client.messages.stream({ model, max_tokens: 64, messages: ask, tools });
  stream.on('streamEvent', (ev) => {
    if (ev.type === 'content_block_delta' && ev.delta.type === 'input_json_delta') jsonDeltas++;
  });
  const msg = await stream.finalMessage();
  const use = msg.content.find((b) => b.type === 'tool_use');
  expect('stream_tool_use', use && use.name === 'lookup', show(msg.content));
  expect('stream_tool_use', /^tok0 tok1 /.test(use.input.q), `input ${show(use.input)}`);
  expect('stream_tool_use', jsonDeltas > 1, `${jsonDeltas} input_json_delta events`);
  expect('stream_tool_use', msg.stop_reason === 'tool_use', `stop_reason ${msg.stop_reason}`);
});

await check('stream_text', async () => {
  let texts = '';
  let events = 0;
  const stream = client.messages.stream({ model, max_tokens: 64, messages: ask });
  stream.on('text', (t) => { texts += t; events++; });
  const msg = await stream.finalMessage();
  expect('stream_text', events > 1, `${events} text events`);
  expect('stream_text', texts === textOf(msg) && /^tok0 tok1 /.test(texts),
    `deltas ${show(texts)} final ${show(textOf(msg))}`);
  expect('stream_text', msg.stop_reason === 'end_turn', `stop_reason ${msg.stop_reason}`);
});

await check('count_tokens', async () => {
  const r = await client.messages.countTokens({ model, messages: ask });
  expect('count_tokens', Number.isInteger(r.input_tokens) && r.input_tokens > 0, show(r));
});

await check('error_429', async () => {
  try {
    await client.messages.create({ model, max_tokens: 64, messages: ask },
      { headers: { 'x-mock-status': '429' } });
  } catch (e) {
    expect('error_429', e instanceof Anthropic.RateLimitError && e.status === 429,
      `${e.constructor.name} status ${e.status}`);
    return;
  }
  expect('error_429', false, 'no error thrown');
});

done({ sdk: 'anthropic', model });
