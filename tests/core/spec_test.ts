import assert from "node:assert/strict";
import type { PrisnToml } from "../../core/prisn_toml.ts";
import {
  defaultName,
  type DeployFlags,
  parseEnvFile,
  parseEnvPair,
  parsePort,
  parseReplicas,
  resolveSpec,
  runSpecOf,
} from "../../core/spec.ts";
import { assertInvalid } from "../_helpers.ts";

function resolve(
  flags: DeployFlags = {},
  { toml, files = ["main.py"], name = "app" }: {
    toml?: PrisnToml;
    files?: string[];
    name?: string;
  } = {},
) {
  return resolveSpec({ toml, flags, files, defaultName: name });
}

// --- parseReplicas ----------------------------------------------------------------------------

Deno.test("parseReplicas() accepts whole numbers from 0 to 1000, as text or number", () => {
  assert.equal(parseReplicas("0"), 0);
  assert.equal(parseReplicas("3"), 3);
  assert.equal(parseReplicas(" 7 "), 7);
  assert.equal(parseReplicas(1000), 1000);
  assert.equal(parseReplicas(2), 2);
});

Deno.test("parseReplicas() rejects negatives, fractions, words and too many", () => {
  for (const value of ["-1", "abc", "1.5", "", "1e3", "0x10", "1001", 1.5, -2]) {
    assertInvalid(
      () => parseReplicas(value),
      new RegExp(`^replicas "${value}" is not valid: give a whole number from 0 to 1000$`),
    );
  }
});

// --- parsePort --------------------------------------------------------------------------------

Deno.test("parsePort() accepts 1 to 65535", () => {
  assert.equal(parsePort("1"), 1);
  assert.equal(parsePort("8080"), 8080);
  assert.equal(parsePort(65535), 65535);
});

Deno.test("parsePort() rejects 0, 70000, negatives and non-numbers", () => {
  for (const value of ["0", "70000", "65536", "-80", "http", "80.5", "", 0, 70000]) {
    assertInvalid(
      () => parsePort(value),
      new RegExp(`^port "${value}" is not valid: give a number from 1 to 65535$`),
    );
  }
});

// --- parseEnvPair -----------------------------------------------------------------------------

Deno.test("parseEnvPair() splits at the first '=' and keeps the rest of the value", () => {
  assert.deepEqual(parseEnvPair("LOG_LEVEL=debug"), ["LOG_LEVEL", "debug"]);
  assert.deepEqual(parseEnvPair("URL=a=b=c"), ["URL", "a=b=c"]);
  assert.deepEqual(parseEnvPair("EMPTY="), ["EMPTY", ""]);
  assert.deepEqual(parseEnvPair("_x1=1"), ["_x1", "1"]);
});

Deno.test("parseEnvPair() rejects a pair without '=' or with a bad key", () => {
  for (const pair of ["FOO", "=value", "1ABC=x", "MY-VAR=x", "A B=x", ""]) {
    assertInvalid(
      () => parseEnvPair(pair),
      /^--env ".*" is not valid: use KEY=VALUE with a letter or _ first in KEY$/,
    );
  }
});

// --- parseEnvFile -----------------------------------------------------------------------------

Deno.test("parseEnvFile() reads KEY=VALUE lines, skipping blanks and comments", () => {
  const text = [
    "# settings",
    "",
    "LOG_LEVEL=info",
    "  PORT = 8080  ",
    "export REGION=eu-west-1",
    "EMPTY=",
    "URL=postgres://u@h/db?x=1",
    "LOG_LEVEL=debug",
  ].join("\n");
  assert.deepEqual(parseEnvFile(text, ".env"), {
    LOG_LEVEL: "debug",
    PORT: "8080",
    REGION: "eu-west-1",
    EMPTY: "",
    URL: "postgres://u@h/db?x=1",
  });
});

Deno.test("parseEnvFile() unquotes values and reads escapes only in double quotes", () => {
  const text = [
    `DOUBLE="two words"`,
    `SINGLE='it # is not a comment'`,
    `ESCAPED="line1\\nline2 \\"quoted\\""`,
    `RAW='line1\\nline2'`,
    `HASH=value # a comment`,
    `NOHASH=val#ue`,
  ].join("\r\n");
  assert.deepEqual(parseEnvFile(text, ".env"), {
    DOUBLE: "two words",
    SINGLE: "it # is not a comment",
    ESCAPED: 'line1\nline2 "quoted"',
    RAW: "line1\\nline2",
    HASH: "value",
    NOHASH: "val#ue",
  });
});

Deno.test("parseEnvFile() names the file and line of a bad line but never echoes it", () => {
  assertInvalid(
    () => parseEnvFile("A=1\n\nnot a pair\n", "prod.env"),
    /^prod\.env:3: expected KEY=VALUE \(a name of letters, digits and _\)$/,
  );
  const shadow = "root:$y$j9T$secrethashvalue:19000:0:99999:7:::\n";
  assert.throws(
    () => parseEnvFile(shadow, "/etc/shadow"),
    (e: Error) => e.message.startsWith("/etc/shadow:1:") && !e.message.includes("secrethash"),
  );
  assertInvalid(() => parseEnvFile("1KEY=x", "a.env"), /^a\.env:1: expected KEY=VALUE/);
});

Deno.test({
  name: "parseEnvFile() unquotes a quoted value that has a comment after it",

  fn() {
    assert.deepEqual(parseEnvFile(`GREETING="hello world" # shown on start`, ".env"), {
      GREETING: "hello world",
    });
  },
});

// --- defaultName ------------------------------------------------------------------------------

Deno.test("defaultName() takes a folder's name and a file's stem, as a DNS label", () => {
  assert.equal(defaultName("/home/me/My_App", "dir"), "my-app");
  assert.equal(defaultName("/home/me/api/", "dir"), "api");
  assert.equal(defaultName("/home/me/my app.v2", "dir"), "my-app-v2");
  assert.equal(defaultName("/srv/scripts/Nightly_Report.py", "file"), "nightly-report");
  assert.equal(defaultName("backup.tar.sh", "file"), "backup-tar");
});

Deno.test("defaultName() falls back to 'app' when the path has no name", () => {
  assert.equal(defaultName("/", "dir"), "app");
});

// --- resolveSpec: type ------------------------------------------------------------------------

Deno.test("resolveSpec() makes a schedule a cronjob", () => {
  const spec = resolve({ schedule: "0 2 * * *" });
  assert.equal(spec.type, "cronjob");
  assert.equal(spec.schedule, "0 2 * * *");
  assert.equal(spec.replicas, 0);
});

Deno.test("resolveSpec() makes a port or a replica count a service", () => {
  const withPort = resolve({ port: "8000" });
  assert.equal(withPort.type, "service");
  assert.equal(withPort.port, 8000);
  assert.equal(withPort.replicas, 1);

  const withReplicas = resolve({ replicas: "3" });
  assert.equal(withReplicas.type, "service");
  assert.equal(withReplicas.replicas, 3);
  assert.equal("port" in withReplicas, false);

  assert.equal(resolve({}, { toml: { replicas: 2 } }).type, "service");
  assert.equal(resolve({}, { toml: { port: 9000 } }).type, "service");
});

Deno.test("resolveSpec() makes anything else a job with no replicas", () => {
  const spec = resolve();
  assert.equal(spec.type, "job");
  assert.equal(spec.replicas, 0);
  assert.equal("port" in spec, false);
  assert.equal("schedule" in spec, false);
});

Deno.test("resolveSpec() keeps an explicit type and rejects an unknown one", () => {
  assert.equal(resolve({ type: "service" }).type, "service");
  assert.equal(resolve({}, { toml: { type: "service" } }).type, "service");
  assertInvalid(
    () => resolve({ type: "daemon" }),
    /^type "daemon" is not valid: use service, job or cronjob$/,
  );
});

Deno.test("resolveSpec() rejects a cronjob without a schedule", () => {
  assertInvalid(() => resolve({ type: "cronjob" }), /^a cronjob needs a schedule: /);
  assertInvalid(() => resolve({}, { toml: { type: "cronjob" } }), /^a cronjob needs a schedule/);
});

Deno.test("resolveSpec() rejects a job with a port and a service with a schedule", () => {
  assertInvalid(() => resolve({ type: "job", port: "8000" }), /^a job takes no port: /);
  assertInvalid(
    () => resolve({ port: 8000 }, { toml: { type: "job" } }),
    /^a job takes no port/,
  );
  assertInvalid(
    () => resolve({ schedule: "* * * * *", port: "8000" }),
    /^a cronjob takes no port/,
  );
  assertInvalid(
    () => resolve({ type: "service", schedule: "* * * * *" }),
    /^a service takes no schedule: /,
  );
});

// --- resolveSpec: flags over prisn.toml ---------------------------------------------------------

Deno.test("resolveSpec() takes a balancer with a port from a flag, and none without a port", () => {
  assert.equal(
    resolve({ port: "8000" }, { toml: { balancer: "userspace" } }).balancer,
    "userspace",
  );
  assertInvalid(
    () => resolve({}, { toml: { balancer: "kernel" } }),
    'balancer = "kernel" needs a service port: set port or --port, or drop balancer',
  );
});

Deno.test("resolveSpec() lets every flag override prisn.toml", () => {
  const toml: PrisnToml = {
    name: "from-toml",
    type: "service",
    port: 9000,
    replicas: 2,
    entrypoint: "main.py",
    runtime: "python3",
    timezone: "UTC",
    env: { A: "toml", B: "toml" },
  };
  const spec = resolve({
    name: "from-flags",
    port: "9100",
    replicas: "5",
    entrypoint: "other.py",
    runtime: "python3.11",
    timezone: "Europe/Berlin",
    env: ["B=flag", "C=flag"],
  }, { toml, files: ["main.py", "other.py"] });
  assert.equal(spec.name, "from-flags");
  assert.equal(spec.type, "service");
  assert.equal(spec.port, 9100);
  assert.equal(spec.replicas, 5);
  assert.equal(spec.entrypoint, "other.py");
  assert.equal(spec.runtime, "python3.11");
  assert.equal(spec.timezone, "Europe/Berlin");
  assert.deepEqual(spec.env, { A: "toml", B: "flag", C: "flag" });
});

Deno.test("resolveSpec() lets a flag type override the type prisn.toml implies", () => {
  const spec = resolve({ type: "job" }, { toml: { replicas: 3 } });
  assert.equal(spec.type, "job");
  assert.equal(spec.replicas, 0);
});

Deno.test("resolveSpec() takes values from prisn.toml when no flag is given", () => {
  const spec = resolve({}, {
    toml: { name: "nightly", schedule: "0 3 * * *", args: ["--full"], timeout: "5m" },
  });
  assert.equal(spec.name, "nightly");
  assert.equal(spec.type, "cronjob");
  assert.deepEqual(spec.args, ["--full"]);
  assert.equal(spec.timeout, "5m");
});

Deno.test("resolveSpec() uses the default name only when neither flag nor prisn.toml names it", () => {
  assert.equal(resolve({}, { name: "folder-name" }).name, "folder-name");
  assert.equal(resolve({}, { name: "folder-name", toml: { name: "t" } }).name, "t");
  assert.equal(resolve({ name: "f" }, { name: "folder-name", toml: { name: "t" } }).name, "f");
});

Deno.test("resolveSpec() fills args and env with empty defaults", () => {
  const spec = resolve();
  assert.deepEqual(spec.args, []);
  assert.deepEqual(spec.env, {});
});

// --- resolveSpec: entrypoint and runtime ------------------------------------------------------

Deno.test("resolveSpec() picks the entrypoint in the order main.py, app.py, main.js, index.js, main.sh", () => {
  const order = ["main.py", "app.py", "main.js", "index.js", "main.sh"];
  for (let i = 0; i < order.length; i++) {
    const files = ["README.md", ...order.slice(i).reverse(), "lib/util.py"];
    assert.equal(resolve({}, { files }).entrypoint, order[i], files.join(","));
  }
});

Deno.test("resolveSpec() infers the runtime from the entrypoint's extension", () => {
  assert.equal(resolve({}, { files: ["main.py"] }).runtime, "python3");
  assert.equal(resolve({}, { files: ["index.js"] }).runtime, "node");
  assert.equal(resolve({}, { files: ["main.sh"] }).runtime, "bash");
});

Deno.test("resolveSpec() runs the only file of a package whatever its name", () => {
  const spec = resolve({}, { files: ["report.py"] });
  assert.equal(spec.entrypoint, "report.py");
  assert.equal(spec.runtime, "python3");
});

Deno.test("resolveSpec() without an entrypoint says what to add, in one line", () => {
  assertInvalid(
    () => resolve({}, { files: ["a.py", "b.py"] }),
    /^no entrypoint found: add one of main\.py, app\.py, main\.js, index\.js, main\.sh, or set entrypoint or command in prisn\.toml, or --entrypoint$/,
  );
});

Deno.test("resolveSpec() rejects an entrypoint that is not in the package", () => {
  assertInvalid(
    () => resolve({ entrypoint: "missing.py" }),
    /^entrypoint "missing\.py" is not in the package: check the path$/,
  );
});

Deno.test("resolveSpec() rejects an unknown runtime, given or impossible to infer", () => {
  assertInvalid(() => resolve({ runtime: "ruby" }), /^runtime "ruby" is not supported: use /);
  assertInvalid(
    () => resolve({}, { toml: { runtime: "python2" } }),
    /^runtime "python2" is not supported/,
  );
  assertInvalid(
    () => resolve({}, { files: ["job.rb"] }),
    /^cannot tell the runtime of "job\.rb": set runtime \(python3, node, bash\) in prisn\.toml or --runtime$/,
  );
  assert.equal(resolve({ runtime: "bash" }, { files: ["job.rb"] }).runtime, "bash");
});

// --- resolveSpec: names, numbers and env -------------------------------------------------------

Deno.test("resolveSpec() rejects names that are not DNS labels", () => {
  for (const name of ["My_App", "-api", "api-", "", "a".repeat(64), "api.v2"]) {
    assertInvalid(() => resolve({ name }), /is not valid: use 1-63 lowercase letters/);
  }
  assertInvalid(() => resolve({}, { name: "Bad Name" }), /^name "Bad Name" is not valid/);
});

Deno.test("resolveSpec() rejects bad replica counts and ports from flags", () => {
  for (const replicas of ["-1", "abc", "1.5"]) {
    assertInvalid(() => resolve({ replicas }), /^replicas ".*" is not valid/);
  }
  for (const port of ["0", "70000"]) {
    assertInvalid(() => resolve({ port }), /^port ".*" is not valid/);
  }
});

Deno.test("resolveSpec() rejects an --env without '='", () => {
  assertInvalid(() => resolve({ env: ["DEBUG"] }), /^--env "DEBUG" is not valid/);
});

// --- resolveSpec: env files and secrets --------------------------------------------------------

Deno.test("resolveSpec() layers env: prisn.toml, then env files in order, then --env, then --secret", () => {
  const spec = resolve({
    envFiles: [
      { file: "a.env", text: "A=file-a\nB=file-a\nC=file-a\nD=file-a\n" },
      { file: "b.env", text: "B=file-b\nC=file-b\nD=file-b\n" },
    ],
    env: ["C=flag", "D=flag"],
    secret: ["D=secret"],
  }, { toml: { env: { A: "toml", T: "toml" } } });
  assert.deepEqual(spec.env, { A: "file-a", B: "file-b", C: "flag", D: "secret", T: "toml" });
});

Deno.test("resolveSpec() collects secrets from prisn.toml and --secret, sorted", () => {
  const spec = resolve({ secret: ["ZED=1", "API_KEY=k"] }, {
    toml: { env: { DB_PASSWORD: "pw" }, secrets: ["DB_PASSWORD"] },
  });
  assert.deepEqual(spec.secrets, ["API_KEY", "DB_PASSWORD", "ZED"]);
  assert.equal(spec.env.API_KEY, "k");
  assert.deepEqual(resolve().secrets, []);
});

Deno.test("resolveSpec() accepts a secret whose value comes from --env or an env file", () => {
  assert.deepEqual(
    resolve({ env: ["TOKEN=t"] }, { toml: { secrets: ["TOKEN"] } }).secrets,
    ["TOKEN"],
  );
  assert.deepEqual(
    resolve({ envFiles: [{ file: ".env", text: "TOKEN=t" }] }, { toml: { secrets: ["TOKEN"] } })
      .secrets,
    ["TOKEN"],
  );
});

Deno.test("resolveSpec() rejects a secret without a value, and a bad --secret or env file", () => {
  assertInvalid(
    () => resolve({}, { toml: { secrets: ["TOKEN"] } }),
    /^secret "TOKEN" has no value: set it in \[env\], --env or --secret TOKEN=VALUE$/,
  );
  assertInvalid(() => resolve({ secret: ["TOKEN"] }), /^--env "TOKEN" is not valid/);
  assertInvalid(
    () => resolve({ envFiles: [{ file: "x.env", text: "oops" }] }),
    /^x\.env:1: expected KEY=VALUE/,
  );
});

// --- runSpecOf --------------------------------------------------------------------------------

Deno.test("runSpecOf() drops only the replica count", () => {
  const spec = resolve({ replicas: "4", port: "8000", env: ["A=1"] });
  const run = runSpecOf(spec);
  assert.equal("replicas" in run, false);
  assert.deepEqual({ ...run, replicas: spec.replicas }, spec);
  assert.equal(spec.replicas, 4, "the spec itself is left alone");
});

// --- command and deps -----------------------------------------------------------------------------

Deno.test("resolveSpec() with a command needs no entrypoint; its program names the runtime", () => {
  const spec = resolve({}, { toml: { command: ["python3", "-m", "http.server", "$PORT"] } });
  assert.deepEqual(spec.command, ["python3", "-m", "http.server", "$PORT"]);
  assert.equal(spec.entrypoint, undefined);
  assert.equal(spec.runtime, "python3");
  assert.deepEqual(spec.args, []);

  const tool = resolve({}, { toml: { command: ["cowsay", "hi"] }, files: ["package.json"] });
  assert.equal(tool.runtime, undefined, "a program that is no runtime sets none");
  assert.equal("runtime" in tool, false);
  const pinned = resolve({ runtime: "python3.11" }, { toml: { command: ["gunicorn"] } });
  assert.equal(pinned.runtime, "python3.11", "--runtime picks the interpreter of the envs");
});

Deno.test("resolveSpec() --entrypoint replaces prisn.toml's command", () => {
  const spec = resolve({ entrypoint: "main.py" }, { toml: { command: ["gunicorn"] } });
  assert.equal(spec.command, undefined);
  assert.equal(spec.entrypoint, "main.py");
  assert.equal(spec.runtime, "python3");
});

Deno.test("resolveSpec() refuses a [deps] file that is not in the package", () => {
  assertInvalid(
    () => resolve({}, { toml: { deps: { python: "missing.txt" } } }),
    /^prisn\.toml: \[deps\] python names "missing\.txt", which is not in the package$/,
  );
  const spec = resolve({}, {
    toml: { deps: { python: "reqs/prod.txt", node: false } },
    files: ["main.py", "reqs/prod.txt"],
  });
  assert.deepEqual(spec.deps, { python: "reqs/prod.txt", node: false });
});
