#!/usr/bin/env node
// Local Cosmos DB (NoSQL REST API) emulator for tests and the dev stack.
//
// The official emulator is a container image that cannot be pulled on these machines, so this
// runs @vercel/cosmosdb-server (an in-memory Node implementation of the REST API), with the
// handlers patched where the package differs from the real service in ways that break the Rust
// SDK (azure_data_cosmos 1.x) or would hide bugs in our code. Each patch below says which gap it
// closes. The patches reach into the package's internals, so the version is pinned (package.json)
// and checked at start.
//
// Usage:
//   node launch.mjs [--port N] [--https [--cert-out FILE]] [--no-stdin] [--trace]
//     --port N     TCP port on 127.0.0.1 (env COSMOS_EMULATOR_PORT); 0 or unset = a free port.
//     --https      serve HTTPS with a self-signed certificate made at start (needs `openssl` on
//                  PATH; env COSMOS_EMULATOR_TLS=1). Default: plain HTTP, which the Rust SDK
//                  accepts for emulator hosts (127.0.0.1, localhost) only.
//     --cert-out F with --https: also write the certificate (PEM) to F, for a client that should
//                  trust it rather than relax validation (env COSMOS_EMULATOR_CERT_OUT).
//     --no-stdin   do not exit when stdin closes (for a shell's background job, whose stdin is
//                  /dev/null; env COSMOS_EMULATOR_IGNORE_STDIN=1).
//     --trace      one stderr line per request: method, path, status, time, x-ms-* headers
//                  (env COSMOS_EMULATOR_TRACE=1).
//     --entra-only an account as deploy/ makes it: local (key) authentication disabled for data,
//                  so documents, queries and batches need an Entra token (`type=aad`), which in
//                  turn cannot create or delete databases and containers (the data-plane role
//                  may not); those need the key, standing in for the control plane (ARM, Bicep).
//                  Refusals are 401/403 with Cosmos DB's words (env COSMOS_EMULATOR_ENTRA_ONLY=1).
//   The package is loaded from $COSMOS_EMULATOR_MODULES (a folder holding node_modules/), else
//   from this folder (npm ci --prefix scripts/cosmos-emulator), else from
//   <repo>/.interop/cosmos-emulator.
//
// Protocol with the caller: exactly one line `READY <url>` on stdout once the port accepts
// connections (url like http://127.0.0.1:PORT), nothing else on stdout; logs go to stderr. The
// process exits when stdin closes (the parent went away) or on SIGTERM/SIGINT/SIGHUP.
//
// Client side (azure_data_cosmos 1.0.0): endpoint http://127.0.0.1:PORT/, any key (send the
// emulator's well-known one so the real signing path runs), binary encoding OFF
// (BinaryEncodingOptions::new().with_enabled(false) or AZURE_COSMOS_BINARY_ENCODING_ENABLED=false).
// Over --https also ServerCertificateValidation::RequiredUnlessEmulator on the runtime's
// ConnectionPoolOptions. Nothing else is needed.
//
// Gaps patched below: 1 string partition key range ids; 2 locations with the served scheme;
// 3 404 for a missing point read; 4 query scoping (partition key, EPK range, query plans);
// 5 atomic transactional batch; 6 TTL expiry; 7 OFFSET/LIMIT; 8 clean HTTP/2 refusal;
// 9 `Prefer: return=minimal` honoured; plus keep-alive connections and a clear error for
// binary-encoded bodies.

import { createRequire } from "node:module";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const PACKAGE = "@vercel/cosmosdb-server";
const PINNED_VERSION = "1.0.1";
const HOST = "127.0.0.1";

// ------------------------------------------------------------------------------ arguments
function parseArgs(argv) {
  const env = process.env;
  const truthy = (v) => v !== undefined && /^(1|true|yes|on)$/i.test(v);
  const opts = {
    port: env.COSMOS_EMULATOR_PORT ?? "0",
    https: truthy(env.COSMOS_EMULATOR_TLS),
    certOut: env.COSMOS_EMULATOR_CERT_OUT || null,
    watchStdin: !truthy(env.COSMOS_EMULATOR_IGNORE_STDIN),
    trace: truthy(env.COSMOS_EMULATOR_TRACE),
    entraOnly: truthy(env.COSMOS_EMULATOR_ENTRA_ONLY),
  };
  const args = [...argv];
  while (args.length) {
    const a = args.shift();
    if (a === "--port" || a === "-p") opts.port = args.shift();
    else if (a.startsWith("--port=")) opts.port = a.slice("--port=".length);
    else if (a === "--https") opts.https = true;
    else if (a === "--cert-out") opts.certOut = args.shift();
    else if (a === "--no-stdin") opts.watchStdin = false;
    else if (a === "--trace") opts.trace = true;
    else if (a === "--entra-only") opts.entraOnly = true;
    else if (a === "-h" || a === "--help") {
      process.stderr.write("usage: node launch.mjs [--port N] [--https [--cert-out FILE]] [--no-stdin] [--trace] [--entra-only]\n");
      process.exit(0);
    } else fail(`unknown argument: ${a}`);
  }
  const port = Number(opts.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`invalid port: ${opts.port}`);
  opts.port = port;
  return opts;
}

function log(msg) {
  process.stderr.write(`[cosmos-emulator] ${msg}\n`);
}

function fail(msg) {
  log(`ERROR: ${msg}`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));

// ------------------------------------------------------------------------------ load package
// Where the package may be installed: $COSMOS_EMULATOR_MODULES, this folder (npm ci --prefix
// scripts/cosmos-emulator), or <repo>/.interop/cosmos-emulator (next to the interop peers).
const here = path.dirname(fileURLToPath(import.meta.url));
const candidates = process.env.COSMOS_EMULATOR_MODULES
  ? [process.env.COSMOS_EMULATOR_MODULES]
  : [here, path.join(here, "..", "..", ".interop", "cosmos-emulator")];
let require;
let pkgDir;
for (const root of candidates) {
  const req = createRequire(path.join(path.resolve(root), "noop.js"));
  try {
    pkgDir = path.dirname(req.resolve(`${PACKAGE}/package.json`));
    require = req;
    break;
  } catch {
    // try the next one
  }
}
if (!pkgDir) fail(`${PACKAGE} is not installed under ${candidates.join(" or ")}; run: npm ci --prefix ${here}`);
const pkgVersion = JSON.parse(readFileSync(path.join(pkgDir, "package.json"), "utf8")).version;
if (pkgVersion !== PINNED_VERSION) {
  // The patches below depend on this exact version's internals.
  fail(`${PACKAGE} ${pkgVersion} found, the patches are written for ${PINNED_VERSION}`);
}
const lib = (name) => require(path.join(pkgDir, "lib", name));
const handler = (name) => lib(path.join("handler", name));

// Not a gap but a trap: the SDK's default Cosmos binary encoding sends item bodies in a binary
// format the package cannot parse (it answered 500 "Unexpected token ... is not valid JSON").
// Say what to change instead.
const jsonModule = lib("json");
const rawBody = require(require.resolve("raw-body", { paths: [pkgDir] }));
jsonModule.default = async (req) => {
  const body = await rawBody(req);
  if (body.length > 0 && body[0] === 0x80) {
    throw new Error(
      "emulator: binary-encoded (CosmosBinary) request body; disable binary encoding on the client " +
        "(BinaryEncodingOptions::new().with_enabled(false) or AZURE_COSMOS_BINARY_ENCODING_ENABLED=false)",
    );
  }
  return JSON.parse(body.toString());
};
const readJson = jsonModule.default;
const { default: trueHeader } = lib("true-header");
const partitionHeader = lib("utils/get-partition-from-header");
const getPartitionFromHeader = partitionHeader.default;
const { parsePartitionKey } = partitionHeader;
const documentOperations = handler("_document-operations");
const { default: readItems } = handler("_read-items");

// Parses the x-ms-documentdb-partitionkey header as the package does; undefined when absent or
// unparsable (e.g. `[{}]`, the "no key" form).
function partitionKeyOf(req, fallback) {
  const raw = getPartitionFromHeader(req);
  if (raw === undefined) return undefined;
  try {
    return parsePartitionKey(raw, fallback);
  } catch {
    return undefined;
  }
}

// Replaces a handler module's default export. routes.js copies each handler's `default` into
// its routing table when it is first required, so every patch must be applied before
// lib/index.js (which requires routes.js) is loaded below.
function patchHandler(name, makeReplacement) {
  const mod = handler(name);
  const original = mod.default;
  mod.default = makeReplacement(original);
}

// ------------------------------------------------------------------------------ patches
const scheme = opts.https ? "https" : "http";
let listenPort = 0;

// Gap 1: the collection's partition key range is created with a numeric id (0). The real service
// and the Rust driver use string ids; with a number the driver's routing-map parse fails and
// every data-plane call ends in 503 / sub-status 20305 (ClientTopologyResolutionFailed).
patchHandler("read-partition-key-ranges", (original) => async (account, req, res, params) => {
  const body = await original(account, req, res, params);
  if (body && Array.isArray(body.PartitionKeyRanges)) {
    body.PartitionKeyRanges = body.PartitionKeyRanges.map((range) => ({
      ...range,
      id: String(range.id),
      parents: (range.parents || []).map(String),
    }));
  }
  return body;
});

// Gap 2: the account metadata (GET /) always advertises https://host:port/ as the write and
// read locations, even when serving plain HTTP; the SDK then routes every request to that
// https:// URL and fails the TLS handshake. Advertise the scheme and host:port actually served.
patchHandler("read-meta", (original) => (account, req, res, params) => {
  const meta = original(account, req, res, params);
  const endpoint = `${scheme}://${req.headers.host || `${HOST}:${listenPort}`}/`;
  const relocate = (locations) =>
    (locations || []).map((l) => ({ ...l, databaseAccountEndpoint: endpoint }));
  return {
    ...meta,
    writableLocations: relocate(meta.writableLocations),
    readableLocations: relocate(meta.readableLocations),
  };
});

// Gap 3: a point read of a missing document in a partitioned container throws inside the handler
// (it reads a property of `undefined`) and answers 500; the service answers 404 NotFound, which
// callers must be able to tell apart from a server error.
patchHandler("read-document", (original) => (account, req, res, params) => {
  const collection = account.database(params.dbId).collection(params.collId);
  if (collection.read()) {
    const key = partitionKeyOf(req, params.docId);
    if (!collection.document(params.docId, key).read()) {
      res.statusCode = 404;
      return {
        code: "NotFound",
        message: "Entity with the specified id does not exist in the system.",
      };
    }
  }
  return original(account, req, res, params);
});

// Gap 4: query scoping. The package runs every query over the whole container and refuses a
// query on a partitioned container (400) unless the WHERE clause names the partition key or the
// request says cross-partition. The Rust SDK scopes its requests the way the service expects:
//   - one logical partition: x-ms-documentdb-partitionkey (FeedScope::partition);
//   - cross-partition: one request per physical range (x-ms-documentdb-partitionkeyrangeid), and
//     when its query plan narrows the query to some partition key values (WHERE c.pk IN (...)),
//     one request per value's effective-partition-key (EPK) range (x-ms-start-epk/x-ms-end-epk);
//     without EPK filtering each such request returned the whole container (duplicates);
//   - when its local planner cannot plan a query it asks the gateway for a plan
//     (x-ms-cosmos-is-query-plan-request); the package answered with documents, which the SDK read
//     as a plan with no ranges (500 / 20302 ClientQueryPlanProducedEmptyRanges).
// Here the query runs, with the package's own engine, over exactly the documents the request is
// scoped to; a plan request gets a pass-through plan (one range, no client-side ORDER BY/TOP/
// aggregation), which is exact here because the emulator has a single physical partition.
const QUERY_PLAN_PASSTHROUGH = {
  partitionedQueryExecutionInfoVersion: 2,
  queryInfo: {
    distinctType: "None",
    orderBy: [],
    orderByExpressions: [],
    groupByExpressions: [],
    groupByAliases: [],
    aggregates: [],
    groupByAliasToAggregateType: {},
    hasSelectValue: false,
    hasNonStreamingOrderBy: false,
  },
  queryRanges: [{ min: "", max: "FF", isMinInclusive: true, isMaxInclusive: false }],
};
patchHandler("query-documents", (original) => async (account, req, res, params) => {
  const planRequest = trueHeader(req, "x-ms-cosmos-is-query-plan-request");
  const crossPartition = trueHeader(req, "x-ms-documentdb-query-enablecrosspartition");
  const key = crossPartition ? undefined : partitionKeyOf(req, undefined);
  const startEpk = req.headers["x-ms-start-epk"];
  const endEpk = req.headers["x-ms-end-epk"];
  const rangeId = req.headers["x-ms-documentdb-partitionkeyrangeid"];
  if (!planRequest && key === undefined && startEpk === undefined && endEpk === undefined && rangeId === undefined) {
    return original(account, req, res, params);
  }
  return readItems(req, res, "Documents", async ({ continuation, maxItemCount }) => {
    const body = await readJson(req);
    if (!body.query) {
      res.statusCode = 400;
      return { code: "BadRequest", message: "missing query" };
    }
    const collection = account.database(params.dbId).collection(params.collId);
    const props = collection.read();
    if (!props) return null; // readItems turns this into 404
    if (planRequest) return QUERY_PLAN_PASSTHROUGH;
    const docs = collection.documents;
    let keep = () => true;
    if (key !== undefined) {
      keep = (doc) => docs._getPartition(doc) === key;
    } else if (startEpk !== undefined || endEpk !== undefined) {
      if (!isSingleHashV2(props)) {
        res.statusCode = 400;
        return { code: "BadRequest", message: "emulator: EPK-scoped queries need a single-path Hash v2 partition key" };
      }
      const lo = String(startEpk || "").toUpperCase();
      const hi = String(endEpk || "FF").toUpperCase();
      keep = (doc) => {
        const epk = effectivePartitionKeyV2(docs._getPartition(doc));
        return lo <= epk && epk < hi;
      };
    }
    try {
      return runScopedQuery(docs, body, keep, { continuation, maxItemCount });
    } catch (err) {
      if (err.badRequest || err instanceof SyntaxError || err.name === "SyntaxError") {
        res.statusCode = 400;
        return { code: "BadRequest", message: err.message };
      }
      throw err;
    }
  });
});

function isSingleHashV2(props) {
  const pk = props.partitionKey || {};
  return (pk.paths || []).length === 1 && (pk.kind || "Hash") === "Hash" && Number(pk.version) === 2;
}

// Gap 7: the package's query engine does not parse `OFFSET n LIMIT m` (400 "Expected ... but "O"
// found"), which the service supports and the SDK passes through for single-partition queries.
// A trailing OFFSET/LIMIT (literals or @parameters) is cut off and applied to the full result,
// then paged with a continuation of our own.
const OFFSET_LIMIT = /\s+OFFSET\s+(\d+|@\w+)\s+LIMIT\s+(\d+|@\w+)\s*$/i;

// Runs the query over the documents for which keep(doc) holds. Items.query is synchronous, so
// swapping the document map for the duration of the call cannot interleave with another request.
function runScopedQuery(docs, body, keep, { continuation, maxItemCount }) {
  const all = docs._data;
  docs._data = new Map([...all].filter(([, item]) => keep(item.read())));
  try {
    const m = OFFSET_LIMIT.exec(body.query);
    if (!m) return docs.query(body, { continuation, maxItemCount });
    const value = (token) =>
      token.startsWith("@") ? ((body.parameters || []).find((p) => p.name === token) || {}).value : Number(token);
    const offset = value(m[1]);
    const limit = value(m[2]);
    if (!Number.isInteger(offset) || !Number.isInteger(limit) || offset < 0 || limit < 0) {
      throw Object.assign(new Error("OFFSET and LIMIT take non-negative integers"), { badRequest: true });
    }
    const full = docs.query({ ...body, query: body.query.slice(0, m.index) }, {});
    const rows = full.result.slice(offset, offset + limit);
    const from = continuation && Number.isInteger(continuation.offsetLimitNext) ? continuation.offsetLimitNext : 0;
    const size = maxItemCount > 0 ? maxItemCount : rows.length;
    const to = from + size;
    return { result: rows.slice(from, to), continuation: to < rows.length ? { offsetLimitNext: to } : null };
  } finally {
    docs._data = all;
  }
}

// Effective partition key of a single-path Hash v2 container, as the SDK computes it to route:
// MurmurHash3 x64 128 (seed 0) over the value's hashing encoding (type marker, payload; strings
// end with 0xFF), as 16 big-endian bytes with the top two bits cleared, in upper-case hex.
function effectivePartitionKeyV2(value) {
  let bytes;
  if (value === undefined || (typeof value === "object" && value !== null)) bytes = Buffer.from([0x00]);
  else if (value === null) bytes = Buffer.from([0x01]);
  else if (value === false) bytes = Buffer.from([0x02]);
  else if (value === true) bytes = Buffer.from([0x03]);
  else if (typeof value === "number") {
    bytes = Buffer.alloc(9);
    bytes[0] = 0x05;
    bytes.writeDoubleLE(value, 1);
  } else bytes = Buffer.concat([Buffer.from([0x08]), Buffer.from(String(value), "utf8"), Buffer.from([0xff])]);
  const [h1, h2] = murmur3x64128(bytes);
  const hex = h2.toString(16).padStart(16, "0") + h1.toString(16).padStart(16, "0");
  const first = (parseInt(hex.slice(0, 2), 16) & 0x3f).toString(16).padStart(2, "0");
  return (first + hex.slice(2)).toUpperCase();
}

const M64 = (1n << 64n) - 1n;
const rotl64 = (x, r) => ((x << BigInt(r)) | (x >> BigInt(64 - r))) & M64;
const mul64 = (a, b) => (a * b) & M64;
function fmix64(k) {
  k ^= k >> 33n;
  k = mul64(k, 0xff51afd7ed558ccdn);
  k ^= k >> 33n;
  k = mul64(k, 0xc4ceb9fe1a85ec53n);
  return k ^ (k >> 33n);
}
function murmur3x64128(buf) {
  const c1 = 0x87c37b91114253d5n;
  const c2 = 0x4cf5ad432745937fn;
  let h1 = 0n;
  let h2 = 0n;
  const blocks = Math.floor(buf.length / 16);
  for (let i = 0; i < blocks; i += 1) {
    let k1 = buf.readBigUInt64LE(i * 16);
    let k2 = buf.readBigUInt64LE(i * 16 + 8);
    h1 ^= mul64(rotl64(mul64(k1, c1), 31), c2);
    h1 = (mul64((rotl64(h1, 27) + h2) & M64, 5n) + 0x52dce729n) & M64;
    h2 ^= mul64(rotl64(mul64(k2, c2), 33), c1);
    h2 = (mul64((rotl64(h2, 31) + h1) & M64, 5n) + 0x38495ab5n) & M64;
  }
  const tail = blocks * 16;
  const rest = buf.length & 15;
  let k1 = 0n;
  let k2 = 0n;
  for (let i = rest - 1; i >= 8; i -= 1) k2 ^= BigInt(buf[tail + i]) << BigInt((i - 8) * 8);
  if (rest > 8) h2 ^= mul64(rotl64(mul64(k2, c2), 33), c1);
  for (let i = Math.min(rest, 8) - 1; i >= 0; i -= 1) k1 ^= BigInt(buf[tail + i]) << BigInt(i * 8);
  if (rest > 0) h1 ^= mul64(rotl64(mul64(k1, c1), 31), c2);
  h1 ^= BigInt(buf.length);
  h2 ^= BigInt(buf.length);
  h1 = (h1 + h2) & M64;
  h2 = (h2 + h1) & M64;
  h1 = fmix64(h1);
  h2 = fmix64(h2);
  h1 = (h1 + h2) & M64;
  h2 = (h2 + h1) & M64;
  return [h1, h2];
}

// Gap 5: transactional batch. The package (a) applies operations one by one and keeps the ones
// that ran before a failure, where the service commits all or nothing; (b) parses each
// operation's partition key from the operation itself, which the SDK does not send (the key is in
// the batch's header), so Replace/Read/Delete in a batch throw and the whole batch answers 500;
// (c) answers 200 with the failed operation's status inside. The service answers 207 Multi-Status
// when an operation fails, with that operation's status and 424 Failed Dependency for all others,
// and nothing applied. Non-atomic (bulk) requests keep the package's behaviour.
patchHandler("batch-documents", (original) => async (account, req, res, params) => {
  if (!trueHeader(req, "x-ms-cosmos-batch-atomic")) return original(account, req, res, params);
  const ops = await readJson(req);
  const collection = account.database(params.dbId).collection(params.collId);
  if (!collection.read()) {
    res.statusCode = 404;
    return { code: "NotFound", message: "Resource Not Found" };
  }
  if (!Array.isArray(ops) || ops.length === 0 || ops.length > 100) {
    res.statusCode = 400;
    return { code: "BadRequest", message: "a batch holds 1 to 100 operations" };
  }
  const rawKey = getPartitionFromHeader(req);
  const key = partitionKeyOf(req, undefined);
  const docs = collection.documents;
  const saved = { data: new Map(docs._data), index: new Map(docs._index), ridCount: docs._ridCount };
  const restore = () => {
    docs._data = saved.data;
    docs._index = saved.index;
    docs._ridCount = saved.ridCount;
  };
  const results = [];
  let failedAt = -1;
  try {
    for (let i = 0; i < ops.length; i += 1) {
      const op = { partitionKey: rawKey, ...ops[i] };
      let result;
      const body = op.resourceBody;
      if (body && typeof body === "object" && docs._getPartition(body) !== key) {
        // The service refuses an item whose key differs from the batch's.
        result = { statusCode: 400, body: { code: "BadRequest", message: "partition key mismatch" } };
      } else {
        switch (op.operationType) {
          case "Create":
            result = documentOperations.createOperation(collection, op);
            break;
          case "Upsert":
            result = documentOperations.upsertOperation(collection, op);
            break;
          case "Read":
            result = documentOperations.readOperation(collection, op);
            break;
          case "Delete":
            result = documentOperations.deleteOperation(collection, op);
            break;
          case "Replace":
            // The operation's id names the item to replace; the package reads it from the body.
            result =
              op.id !== undefined && body && body.id !== op.id
                ? { statusCode: 400, body: { code: "BadRequest", message: "id mismatch" } }
                : documentOperations.replaceOperation(collection, op);
            break;
          default:
            result = {
              statusCode: 400,
              body: { code: "BadRequest", message: `operation type '${op.operationType}' is not supported` },
            };
        }
      }
      if (result.statusCode >= 400) {
        failedAt = i;
        results.push({ statusCode: result.statusCode, requestCharge: 1 });
        break;
      }
      results.push({
        statusCode: result.statusCode,
        requestCharge: 1,
        eTag: result.body ? result.body._etag : undefined,
        resourceBody: result.body,
      });
    }
  } catch (err) {
    restore(); // an unexpected error must not leave half a batch applied
    throw err;
  }
  if (wantsMinimal(req)) {
    ops.forEach((op, i) => {
      if (results[i] && op.operationType !== "Read") delete results[i].resourceBody;
    });
  }
  if (failedAt >= 0) {
    restore();
    res.statusCode = 207;
    return ops.map((_, i) => (i === failedAt ? results[i] : { statusCode: 424, requestCharge: 0 }));
  }
  res.statusCode = 200;
  return results;
});

// Gap 9: `Prefer: return=minimal`. The SDK's default (ContentResponseOnWrite::Disabled) asks the
// service not to return the written item; the service then answers with headers (ETag) and an
// empty body. The package always returned the item, so code that reads the body of a write
// without enabling content response passed here and would fail against Azure.
function wantsMinimal(req) {
  return /return=minimal/i.test(String(req.headers.prefer || ""));
}
for (const name of ["create-document", "upsert-document", "replace-document", "patch-document"]) {
  patchHandler(name, (original) => async (account, req, res, params) => {
    const body = await original(account, req, res, params);
    if (!wantsMinimal(req) || res.statusCode >= 300 || !body) return body;
    if (body._etag) res.setHeader("etag", body._etag);
    return undefined; // the package's responder then sends an empty body
  });
}

// Gap 6: time to live. The package stores a container's defaultTtl and an item's ttl but never
// expires anything. Sweep once a second with the service's rules: nothing expires unless the
// container has defaultTtl (-1 = on, no default); an item's ttl overrides it; -1 = never;
// an item expires when _ts + ttl <= now (seconds). The service hides expired items at once; here
// they can linger for up to a second.
function sweepExpired(account) {
  const now = Math.floor(Date.now() / 1000);
  for (const database of account.databases._data.values()) {
    for (const collection of database.collections._data.values()) {
      const props = collection.read();
      if (!props || props.defaultTtl === undefined || props.defaultTtl === null) continue;
      const docs = collection.documents;
      for (const item of [...docs._data.values()]) {
        const doc = item.read();
        const ttl = typeof doc.ttl === "number" ? doc.ttl : props.defaultTtl;
        if (typeof ttl === "number" && ttl > 0 && doc._ts + ttl <= now) {
          docs.delete(doc.id, docs._getPartition(doc));
        }
      }
    }
  }
}

// The package keeps its in-memory account private to its request listener and passes it to
// every handler; the TTL sweep needs it, so every handler records it (wrapped last, over the
// patches above).
let liveAccount = null;
for (const file of readdirSync(path.join(pkgDir, "lib", "handler"))) {
  if (!file.endsWith(".js") || file.startsWith("_")) continue;
  patchHandler(file.slice(0, -3), (original) => (acc, ...rest) => {
    liveAccount = acc;
    return original(acc, ...rest);
  });
}

// ------------------------------------------------------------------------------ TLS (optional)
function makeCertificate() {
  const dir = mkdtempSync(path.join(tmpdir(), "cosmos-emulator-"));
  const keyFile = path.join(dir, "key.pem");
  const certFile = path.join(dir, "cert.pem");
  try {
    execFileSync(
      "openssl",
      [
        "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", keyFile, "-out", certFile, "-days", "7", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        // An end-entity certificate (openssl's default config would mark it CA:TRUE, which
        // rustls refuses as a server certificate even when trusted via SSL_CERT_FILE).
        "-addext", "basicConstraints=critical,CA:FALSE",
        "-addext", "keyUsage=critical,digitalSignature",
        "-addext", "extendedKeyUsage=serverAuth",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    return { key: readFileSync(keyFile), cert: readFileSync(certFile) };
  } catch (err) {
    fail(`--https needs openssl on PATH to make a certificate: ${err.message}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return null;
}

// ------------------------------------------------------------------------------ start
const { createHttpServer, createHttpsServer } = lib("index");
// keepAlive: the package otherwise answers every request with `Connection: close`, so each SDK
// request pays a new TCP (and TLS) handshake. With keep-alive on and no server-side idle timeout
// the SDK's pooled connections are reused, and only the client closes them (no race between a
// server-side idle close and a request the client sends on the same connection).
const serverOptions = { keepAlive: true };
let server;
if (opts.https) {
  const { key, cert } = makeCertificate();
  if (opts.certOut) writeFileSync(opts.certOut, cert);
  // The package's bundled certificate expired in 2021; ours is valid for 127.0.0.1 and localhost.
  // ALPN offers h2 so that the SDK's HTTP/2-only probe reaches the refusal below (gap 8) instead of
  // failing the handshake.
  server = createHttpsServer({ ...serverOptions, key, cert, minVersion: "TLSv1.2", ALPNProtocols: ["h2", "http/1.1"] });
} else {
  server = createHttpServer(serverOptions);
}
server.keepAliveTimeout = 0;

// Gap 8: HTTP/2. The Rust SDK first probes the gateway with HTTP/2 (prior knowledge on http://,
// ALPN "h2" only on https://) and falls back to HTTP/1.1 only on an explicit HTTP/2 refusal (an
// h2 error HTTP_1_1_REQUIRED / PROTOCOL_ERROR). The package speaks HTTP/1.1 only: on http:// it
// answered the h2 preface with an HTTP/1.1 400 and closed, which the SDK read sometimes as a
// protocol error (fallback) and sometimes as "connection closed" (the client build failed with
// 503 / 20011): flaky tests. On https:// the TLS handshake failed (no_application_protocol).
// Answer an HTTP/2 attempt as an HTTP/1.1-only server may: the HTTP/2 server preface, then each
// request stream reset with HTTP_1_1_REQUIRED, leaving the connection for the client to close.
// The SDK then falls back to HTTP/1.1 every time.
const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
function h2Frame(type, flags, stream, payload = Buffer.alloc(0)) {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}
function refuseHttp2(socket, received) {
  let pending = received;
  let prefaceSeen = false;
  socket.write(h2Frame(0x4, 0, 0)); // SETTINGS (none)
  const onData = (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    if (!prefaceSeen) {
      if (pending.length < H2_PREFACE.length) return;
      pending = pending.subarray(H2_PREFACE.length);
      prefaceSeen = true;
    }
    while (pending.length >= 9) {
      const length = pending.readUIntBE(0, 3);
      if (pending.length < 9 + length) break;
      const [type, flags] = [pending[3], pending[4]];
      const stream = pending.readUInt32BE(5) & 0x7fffffff;
      pending = pending.subarray(9 + length);
      if (type === 0x4 && !(flags & 0x1)) socket.write(h2Frame(0x4, 0x1, 0)); // SETTINGS ack
      if (type === 0x1) socket.write(h2Frame(0x3, 0, stream, Buffer.from([0, 0, 0, 0x0d]))); // RST_STREAM HTTP_1_1_REQUIRED
    }
  };
  socket.on("data", onData);
  socket.on("error", () => socket.destroy());
  socket.setTimeout(10000, () => socket.destroy());
  onData(Buffer.alloc(0));
  socket.resume();
}
function guardHttp2(srv, tls) {
  const event = tls ? "secureConnection" : "connection";
  const handlers = srv.listeners(event);
  srv.removeAllListeners(event);
  const pass = (socket) => handlers.forEach((h) => h.call(srv, socket));
  srv.on(event, (socket) => {
    if (tls) {
      if (socket.alpnProtocol === "h2") refuseHttp2(socket, Buffer.alloc(0));
      else pass(socket);
      return;
    }
    // Plain HTTP: look at the first bytes; no HTTP/1.x request line starts with "PRI ".
    let seen = Buffer.alloc(0);
    const onData = (chunk) => {
      seen = Buffer.concat([seen, chunk]);
      if (seen.length < 4) return;
      socket.removeListener("data", onData);
      socket.pause();
      if (seen.subarray(0, 4).toString("latin1") === "PRI ") {
        refuseHttp2(socket, seen);
        return;
      }
      socket.unshift(seen);
      pass(socket);
      socket.resume();
    };
    socket.on("data", onData);
  });
}
guardHttp2(server, opts.https);

// --entra-only: which credential each request needs. Creating, replacing or deleting a
// database or a container is the control plane (the key here); reading the account, a database,
// a container or its partition key ranges takes either; everything else is data (Entra).
function requireEntra(srv) {
  const handlers = srv.listeners("request");
  srv.removeAllListeners("request");
  const controlPath = /^\/dbs(\/[^/]+(\/colls(\/[^/]+)?)?)?\/?$/;
  srv.on("request", (req, res) => {
    let auth = req.headers.authorization ?? "";
    try {
      auth = decodeURIComponent(auth);
    } catch {
      // Left as sent: it matches neither form below.
    }
    const kind = /^type=aad&ver=1\.0&sig=\S+$/.test(auth) ? "aad" : /^type=master&/.test(auth) ? "master" : "none";
    const where = req.url.split("?")[0];
    // The account, its databases and containers: read with either, written with the key only.
    const metadata = where === "/" || controlPath.test(where) || /^\/dbs\/[^/]+\/colls\/[^/]+\/pkranges\/?$/.test(where);
    const control = metadata && req.method !== "GET";
    const refuse = (status, code, message) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify({ code, message }));
    };
    if (metadata && !control && kind !== "none") {
      handlers.forEach((h) => h.call(srv, req, res));
    } else if (control && kind !== "master") {
      refuse(403, "Forbidden", `Request blocked by Auth: the given request [${req.method} ${req.url}] cannot be authorized by AAD token in data plane.`);
    } else if (!control && kind !== "aad") {
      refuse(401, "Unauthorized", "Local Authorization is disabled. Use an AAD token to authorize all requests.");
    } else {
      handlers.forEach((h) => h.call(srv, req, res));
    }
  });
}
if (opts.entraOnly) requireEntra(server);
if (opts.trace) {
  server.prependListener("request", (req, res) => {
    const started = Date.now();
    const pick = Object.entries(req.headers)
      .filter(([k]) => /^(x-ms-|if-match|if-none-match|prefer|content-type)/.test(k))
      .filter(([k]) => !/^x-ms-(date|version|cosmos-sdk-supportedcapabilities|cosmos-supported-query-features|cosmos-query-version|activity-id|client-request-id|cosmos-intended-collection-rid)$/.test(k))
      .map(([k, v]) => `${k}=${v}`)
      .join(" ");
    res.on("finish", () =>
      log(`${req.method} ${req.url} -> ${res.statusCode} (${Date.now() - started} ms) ${pick}`),
    );
  });
}

server.once("error", (err) => fail(`cannot listen on ${HOST}:${opts.port}: ${err.message}`));
server.listen(opts.port, HOST, () => {
  listenPort = server.address().port;
  const url = `${scheme}://${HOST}:${listenPort}`;
  process.stdout.write(`READY ${url}\n`);
  log(`${PACKAGE} ${pkgVersion} serving ${url} (patched: pk-range ids, ${scheme} locations, 404 reads, query scoping + plans, atomic batch, TTL, OFFSET/LIMIT, HTTP/2 refusal, return=minimal, keep-alive)${opts.entraOnly ? "; Entra only for data" : ""}`);
});

const sweep = setInterval(() => {
  if (liveAccount) sweepExpired(liveAccount);
}, 1000);
sweep.unref();

// ------------------------------------------------------------------------------ shutdown
let stopping = false;
function stop(reason) {
  if (stopping) return;
  stopping = true;
  log(`stopping (${reason})`);
  clearInterval(sweep);
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
}
for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"]) process.on(sig, () => stop(sig));
if (opts.watchStdin) {
  process.stdin.on("end", () => stop("stdin closed"));
  process.stdin.on("close", () => stop("stdin closed"));
  process.stdin.on("error", () => stop("stdin error"));
  process.stdin.resume(); // read (and discard) so that "end" fires when the parent closes it
}
