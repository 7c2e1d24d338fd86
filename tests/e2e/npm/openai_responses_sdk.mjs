// The official OpenAI TypeScript SDK's Responses API against a /v1/responses endpoint (the
// gateway, or llmproxy-mockllm directly): text, a function-call round trip, streams with
// and without a function call. Expects the mock's answers ("tok0 tok1 ...", arguments
// {"q": ...}, "tool said: ..."). Env: LLMPROXY_BASE_URL (with /v1), LLMPROXY_KEY, MODEL.
import OpenAI from 'openai';
import { settings, check, expect, done, show } from './common.mjs';

const { baseURL, apiKey, model } = settings('gpt-e2e');
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30000 });
const tools = [
  {
    type: 'function',
    name: 'lookup',
    description: 'Looks a query up.',
    parameters: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] },
    strict: false,
  },
];
const input = [{ role: 'user', content: 'Say hi' }];
const callOf = (resp) => resp.output.find((i) => i.type === 'function_call');

await check('create_text', async () => {
  const r = await client.responses.create({ model, input: 'Say hi' });
  expect('create_text', r.status === 'completed', `status ${r.status}`);
  expect('create_text', /^tok0 tok1 /.test(r.output_text), `output_text ${show(r.output_text)}`);
  expect('create_text', r.usage && r.usage.output_tokens > 0, `usage ${show(r.usage)}`);
});

let call;
await check('create_function_call', async () => {
  const r = await client.responses.create({ model, input, tools });
  call = callOf(r);
  expect('create_function_call', call && call.name === 'lookup', show(r.output));
  const args = JSON.parse(call.arguments);
  expect('create_function_call', /^tok0 /.test(args.q), `arguments ${call.arguments}`);
  expect('create_function_call', typeof call.call_id === 'string' && call.call_id.length > 0,
    'no call_id');
});

await check('create_function_output', async () => {
  const r = await client.responses.create({
    model, tools,
    input: [...input, call, { type: 'function_call_output', call_id: call.call_id, output: 'sunny, 21 C' }],
  });
  expect('create_function_output', r.output_text === 'tool said: sunny, 21 C',
    `output_text ${show(r.output_text)}`);
});

await check('stream_function_call', async () => {
  let deltas = 0;
  const stream = client.responses.stream({ model, input, tools });
  for await (const ev of stream) {
    if (ev.type === 'response.function_call_arguments.delta') deltas++;
  }
  const r = await stream.finalResponse();
  const c = callOf(r);
  expect('stream_function_call', c && c.name === 'lookup', show(r.output));
  expect('stream_function_call', /^tok0 tok1 /.test(JSON.parse(c.arguments).q),
    `arguments ${c.arguments}`);
  expect('stream_function_call', deltas > 1, `${deltas} function_call_arguments.delta events`);
});

await check('stream_text', async () => {
  let texts = '';
  let deltas = 0;
  const stream = client.responses.stream({ model, input });
  for await (const ev of stream) {
    if (ev.type === 'response.output_text.delta') { texts += ev.delta; deltas++; }
  }
  const r = await stream.finalResponse();
  expect('stream_text', deltas > 1, `${deltas} output_text.delta events`);
  expect('stream_text', r.output_text === texts && /^tok0 tok1 /.test(texts),
    `deltas ${show(texts)} final ${show(r.output_text)}`);
  expect('stream_text', r.status === 'completed', `status ${r.status}`);
});

done({ sdk: 'openai-responses', model });
