// Drives the official @anthropic-ai/sdk against the gateway ($GATEWAY):
// a JSON message, a streamed one, a tool call, typed errors.  Prints one
// JSON line of what it got (t/test_anthropic.py checks it).
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({
  baseURL: process.env.GATEWAY,
  apiKey: "client-key-sdk",
  maxRetries: 0,
  defaultHeaders: { "X-LLMRoute-Tier": "simple" },
});
const out = {};
const ask = [{ role: "user", content: "what is 2+2?" }];

const m = await client.messages.create({
  model: "claude-haiku-4-5", max_tokens: 100, messages: ask,
});
out.json = m.content.filter((b) => b.type === "text").map((b) => b.text)
  .join("");

const stream = client.messages.stream({
  model: "claude-haiku-4-5", max_tokens: 100, messages: ask,
});
let text = "";
stream.on("text", (t) => { text += t; });
const final = await stream.finalMessage();
out.stream = text;
out.stream_usage = final.usage;

const t = await client.messages.create({
  model: "claude-haiku-4-5", max_tokens: 100, messages: ask,
  tools: [{ name: "get_weather", description: "weather of a city",
            input_schema: { type: "object",
                            properties: { city: { type: "string" } } } }],
});
const tu = t.content.find((b) => b.type === "tool_use");
out.tool = tu ? { name: tu.name, input: tu.input } : null;

async function errName(p) {
  try { await p; return "none"; } catch (e) {
    if (process.env.SDK_DEBUG) console.error(e.status, e.message);
    return e.constructor.name;
  }
}
out.bad_request = await errName(client.messages.create({
  model: "claude-haiku-4-5", max_tokens: -5, messages: ask }));
out.not_found = await errName(client.messages.create({
  model: "no-such-model", max_tokens: 5, messages: ask }));
out.overloaded = await errName(client.messages.create({
  model: "claude-haiku-4-5", max_tokens: 5, messages: ask }));
// a gateway whose llmroute_client allows one request a minute per client
// key (this SDK sends it as "authorization: Bearer ...")
if (process.env.GATEWAY_LIMITED) {
  const limited = new Anthropic({
    baseURL: process.env.GATEWAY_LIMITED, apiKey: "client-key-limited",
    maxRetries: 0, defaultHeaders: { "X-LLMRoute-Tier": "simple" },
  });
  const one = () => limited.messages.create({
    model: "claude-haiku-4-5", max_tokens: 5, messages: ask });
  out.limited_first = await errName(one());
  out.rate_limited = await errName(one());
}
console.log(JSON.stringify(out));
