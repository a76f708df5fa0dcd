// cryopod's runtime client for nodejs* functions: the Lambda Runtime API loop
// (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html) with Node's standard
// library only, so no npm package is needed. It loads `_HANDLER` (`file.export`) from
// LAMBDA_TASK_ROOT (CommonJS or ES module), supports async and callback handlers, and
// reports errors in the shape AWS's own Node.js runtime reports them.
"use strict";
const http = require("http");
const path = require("path");
const fs = require("fs");
const { pathToFileURL } = require("url");

const [HOST, PORT] = process.env.AWS_LAMBDA_RUNTIME_API.split(":");
const BASE = "/2018-06-01/runtime";
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(method, p, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: HOST, port: Number(PORT), method, path: BASE + p, agent, headers: headers || {} },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function errorBody(e, type) {
  const err = e instanceof Error ? e : new Error(String(e));
  return {
    errorType: type || err.name || "Error",
    errorMessage: err.message,
    trace: String(err.stack || "").split("\n"),
  };
}

function postError(p, body) {
  return request("POST", p, JSON.stringify(body), {
    "Content-Type": "application/json",
    "Lambda-Runtime-Function-Error-Type": body.errorType,
  });
}

async function loadHandler() {
  const handler = process.env._HANDLER || "";
  const root = process.env.LAMBDA_TASK_ROOT || process.cwd();
  const dot = handler.lastIndexOf(".");
  if (dot < 1) {
    return { err: { errorType: "Runtime.MalformedHandlerName", errorMessage: `Bad handler ${handler}`, trace: [] } };
  }
  const file = handler.slice(0, dot);
  const name = handler.slice(dot + 1);
  const base = path.resolve(root, file);
  let mod;
  try {
    const found = [".js", ".mjs", ".cjs"].map((ext) => base + ext).find((f) => fs.existsSync(f));
    if (!found) {
      const e = new Error(`Cannot find module '${file}'`);
      return { err: errorBody(e, "Runtime.ImportModuleError") };
    }
    try {
      mod = found.endsWith(".mjs") ? await import(pathToFileURL(found).href) : require(found);
    } catch (e) {
      if (e && e.code === "ERR_REQUIRE_ESM") mod = await import(pathToFileURL(found).href);
      else throw e;
    }
  } catch (e) {
    const type = e instanceof SyntaxError ? "Runtime.UserCodeSyntaxError" : "Runtime.ImportModuleError";
    return { err: errorBody(e, type) };
  }
  const fn = mod && (mod[name] || (mod.default && mod.default[name]));
  if (typeof fn !== "function") {
    return { err: { errorType: "Runtime.HandlerNotFound", errorMessage: `${handler} is undefined or not exported`, trace: [] } };
  }
  return { fn };
}

function context(headers) {
  const deadline = Number(headers["lambda-runtime-deadline-ms"] || 0);
  return {
    awsRequestId: headers["lambda-runtime-aws-request-id"],
    invokedFunctionArn: headers["lambda-runtime-invoked-function-arn"],
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
}

function run(fn, event, ctx) {
  if (fn.length >= 3) {
    return new Promise((resolve, reject) => {
      const r = fn(event, ctx, (err, out) => (err ? reject(err) : resolve(out)));
      if (r && typeof r.then === "function") r.then(resolve, reject);
    });
  }
  return Promise.resolve().then(() => fn(event, ctx));
}

async function main() {
  const { fn, err } = await loadHandler();
  if (err) {
    console.error(`${err.errorType}: ${err.errorMessage}`);
    await postError("/init/error", err);
    process.exit(1);
  }
  for (;;) {
    const next = await request("GET", "/invocation/next");
    const id = next.headers["lambda-runtime-aws-request-id"];
    process.env._X_AMZN_TRACE_ID = next.headers["lambda-runtime-trace-id"] || "";
    let out;
    try {
      const event = next.body.length ? JSON.parse(next.body.toString("utf8")) : {};
      const result = await run(fn, event, context(next.headers));
      out = JSON.stringify(result === undefined ? null : result);
    } catch (e) {
      const body = errorBody(e);
      console.error(`${body.errorType}: ${body.errorMessage}`);
      await postError(`/invocation/${id}/error`, body);
      continue;
    }
    await request("POST", `/invocation/${id}/response`, out, { "Content-Type": "application/json" });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
