// client.mjs - the official openai SDK (6.x, pinned in package-lock.json) as
// the real client of quotacache's OpenAI-compatible endpoint. Runs ONE
// scenario and prints ONE JSON object on stdout; tests/integration/
// test_openai.py judges it. Never exits non-zero for an API outcome: an
// unexpected error is printed as {"error": ...} so the python side reports a
// clear failed check.
//
//   QC_URL=http://127.0.0.1:PORT QC_KEY=qck_... node client.mjs SCENARIO ARGS...
//
// Scenarios:
//   complete <prompt> [task]              non-streamed, temperature 0
//   stream <prompt> [include_usage 0|1] [task]
//   stream-abort <prompt> <n> [task]      read n content chunks, then break
//   models                                client.models.list()
//   error-quota <prompt> [task]           expects 429 insufficient_quota
//   error-auth                            a well-formed but unknown key
//   error-badmodel                        model "not-a-configured-model"
//   error-n2                              n: 2
// Every output carries "attempts": the HTTP requests the SDK made (a counting
// fetch), so retries show.
import OpenAI from "openai";

const BASE = process.env.QC_URL || "http://127.0.0.1:8080";
const KEY = process.env.QC_KEY || "";
const MODEL = "mock-model";

let attempts = 0;
const countingFetch = (url, init) => {
	attempts++;
	return fetch(url, init);
};

function client(opts = {}) {
	// maxRetries stays at the SDK default (2) unless a scenario says otherwise;
	// the timeout only bounds a hung test
	return new OpenAI({ baseURL: BASE + "/v1", apiKey: KEY, fetch: countingFetch, timeout: 60000, ...opts });
}

function out(obj) {
	process.stdout.write(JSON.stringify({ ...obj, attempts }) + "\n");
}

// the headers the python side looks at, lower-cased names
function pickHeaders(h) {
	const o = {};
	if (!h || typeof h.forEach !== "function") return o;
	h.forEach((value, name) => {
		const n = name.toLowerCase();
		if (n.startsWith("x-ratelimit-") || n === "ratelimit" || n === "ratelimit-policy" ||
			n === "x-should-retry" || n === "retry-after" || n === "content-type" ||
			n.startsWith("x-quotacache-"))
			o[n] = value;
	});
	return o;
}

function describeError(e) {
	return {
		name: e?.constructor?.name ?? null,
		status: e?.status ?? null,
		code: e?.code ?? null,
		type: e?.type ?? null,
		param: e?.param ?? null,
		message: e?.message ?? String(e),
		headers: pickHeaders(e?.headers),
	};
}

const taskHeaders = (task) => (task ? { headers: { "X-Quotacache-Task": task } } : {});
const userMessages = (prompt) => [{ role: "user", content: prompt }];

async function complete(prompt, task) {
	const { data, response } = await client().chat.completions
		.create({ model: MODEL, messages: userMessages(prompt), temperature: 0 }, taskHeaders(task))
		.withResponse();
	const choice = data.choices?.[0] ?? {};
	const hdr = pickHeaders(response.headers);
	out({
		content: choice.message?.content ?? null,
		role: choice.message?.role ?? null,
		finish_reason: choice.finish_reason ?? null,
		n_choices: data.choices?.length ?? 0,
		usage: data.usage ?? null,
		id: data.id ?? null,
		object: data.object ?? null,
		model: data.model ?? null,
		created: data.created ?? null,
		status: response.status,
		cache: response.headers.get("x-quotacache-cache"),
		ratelimit: Object.fromEntries(Object.entries(hdr).filter(([k]) => k.includes("ratelimit"))),
		headers: hdr,
	});
}

async function stream(prompt, includeUsage, task) {
	const body = { model: MODEL, messages: userMessages(prompt), temperature: 0, stream: true };
	if (includeUsage) body.stream_options = { include_usage: true };
	const { data: s, response } = await client().chat.completions.create(body, taskHeaders(task)).withResponse();
	const chunks = [];
	let usage = null;
	const objects = new Set();
	const ids = new Set();
	for await (const chunk of s) {
		const t = Date.now();
		const choice = chunk.choices?.[0];
		objects.add(chunk.object);
		ids.add(chunk.id);
		if (chunk.usage) usage = chunk.usage;
		chunks.push({
			t,
			content: choice?.delta?.content ?? null,
			role: choice?.delta?.role ?? null,
			finish_reason: choice?.finish_reason ?? null,
			n_choices: chunk.choices?.length ?? 0,
			usage: chunk.usage ?? null,
		});
	}
	out({
		chunks,
		text: chunks.map((c) => c.content ?? "").join(""),
		usage,
		n_chunks: chunks.length,
		objects: [...objects],
		n_ids: ids.size,
		status: response.status,
		content_type: response.headers.get("content-type"),
		cache: response.headers.get("x-quotacache-cache"),
		headers: pickHeaders(response.headers),
		done: true, // the SDK's iterator ended (it saw [DONE] or the end of the body)
	});
}

async function streamAbort(prompt, n, task) {
	const body = { model: MODEL, messages: userMessages(prompt), temperature: 0, stream: true };
	const { data: s, response } = await client().chat.completions.create(body, taskHeaders(task)).withResponse();
	const got = [];
	let ended = true;
	for await (const chunk of s) {
		const c = chunk.choices?.[0]?.delta?.content;
		if (c) got.push(c);
		if (got.length >= n) {
			ended = false;
			break; // the SDK aborts the request: the connection is closed mid-stream
		}
	}
	if (!s.controller.signal.aborted) s.controller.abort();
	out({ got, t: Date.now(), aborted: !ended, cache: response.headers.get("x-quotacache-cache") });
}

async function models() {
	const page = await client().models.list();
	const data = page.data ?? [];
	out({ ids: data.map((m) => m.id), data });
}

async function expectError(fn) {
	try {
		const r = await fn();
		out({ error: "expected an error, the call succeeded", result: r ?? null, name: null, status: null });
	} catch (e) {
		if (!(e instanceof OpenAI.APIError)) throw e;
		out(describeError(e));
	}
}

const create = (c, extra, task) =>
	c.chat.completions.create({ model: MODEL, messages: userMessages("hello"), temperature: 0, ...extra },
		taskHeaders(task));

async function main(argv) {
	const [scenario, ...args] = argv;
	switch (scenario) {
	case "complete":
		return complete(args[0], args[1]);
	case "stream":
		return stream(args[0], args[1] === "1", args[2]);
	case "stream-abort":
		return streamAbort(args[0], Number(args[1] || 2), args[2]);
	case "models":
		return models();
	case "error-quota":
		return expectError(() => create(client(), { messages: userMessages(args[0] || "over quota") }, args[1]));
	case "error-auth":
		return expectError(() => create(client({ apiKey: "qck_" + "Z".repeat(32) }), {}, "oai_auth"));
	case "error-badmodel":
		return expectError(() => create(client(), { model: "not-a-configured-model" }, "oai_badmodel"));
	case "error-n2":
		return expectError(() => create(client(), { n: 2 }, "oai_n2"));
	default:
		out({ error: `unknown scenario ${JSON.stringify(scenario)}`, name: null, status: null });
	}
}

try {
	await main(process.argv.slice(2));
} catch (e) {
	out({ error: String(e), name: e?.constructor?.name ?? null, status: e?.status ?? null, detail: describeError(e) });
}
process.exit(0);
