// Shared by the SDK checks (tests/e2e/protocols_sdk_test.cc runs them): settings from the
// environment, an assertion that names the failed check, and the one-line JSON summary.
export function settings(defaultModel) {
  const baseURL = process.env.LLMPROXY_BASE_URL;
  if (!baseURL) fail('setup', 'LLMPROXY_BASE_URL is not set');
  return {
    baseURL,
    apiKey: process.env.LLMPROXY_KEY || 'sk-e2e',
    model: process.env.MODEL || defaultModel,
  };
}

const passed = [];

export function fail(check, message) {
  console.log(JSON.stringify({ ok: false, check, error: message, passed }));
  console.error(`FAIL ${check}: ${message}`);
  process.exit(1);
}

export function expect(check, cond, message) {
  if (!cond) fail(check, message);
}

// Runs one named check; any exception fails it with the exception's message.
export async function check(name, fn) {
  try {
    await fn();
  } catch (e) {
    fail(name, `${e && e.constructor ? e.constructor.name : 'Error'}: ${e && e.message}`);
  }
  passed.push(name);
}

export function done(extra = {}) {
  console.log(JSON.stringify({ ok: true, passed, ...extra }));
}

export const show = (v) => JSON.stringify(v);
