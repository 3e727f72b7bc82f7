import assert from "node:assert/strict";
import {
  parsePrisnToml,
  PRISN_TOML_DEFAULTS,
  PRISN_TOML_KEYS,
  validateName,
} from "../../core/prisn_toml.ts";
import { assertInvalid, isPrisnError } from "../_helpers.ts";

/** Asserts that parsing `text` fails with INVALID and exactly `message`. */
function assertRejects(text: string, message: string, file?: string) {
  assertInvalid(() => parsePrisnToml(text, file), message);
}

const FULL = `# a web service
name = "api"
type = "service"
runtime = "python3.11"
entrypoint = "src/server.py"
args = ["--workers", "2"]
port = 8080
replicas = 3
timezone = "Europe/Berlin"
stop_grace = "15s"
drain_grace = "5s"
readiness_timeout = "1m"
secrets = ["API_KEY"]

[env]
LOG_LEVEL = "info"
WORKERS = 2
DEBUG = false
API_KEY = "s3cret"

[health]
path = "/healthz"
interval = "10s"
timeout = "2s"
failures = 3

[resources]
cpu = "500m"
memory = "512Mi"

[restart]
backoff_initial = "1s"
backoff_max = "2m"
stable_after = "1m"
max_restarts = 10

[history]
successful = 10
failed = 20
versions = 5
`;

Deno.test("parsePrisnToml() returns every key of a full service file", () => {
  assert.deepEqual(parsePrisnToml(FULL), {
    name: "api",
    type: "service",
    runtime: "python3.11",
    entrypoint: "src/server.py",
    args: ["--workers", "2"],
    port: 8080,
    replicas: 3,
    timezone: "Europe/Berlin",
    stop_grace: "15s",
    drain_grace: "5s",
    readiness_timeout: "1m",
    secrets: ["API_KEY"],
    env: { LOG_LEVEL: "info", WORKERS: "2", DEBUG: "false", API_KEY: "s3cret" },
    health: { path: "/healthz", interval: "10s", timeout: "2s", failures: 3 },
    resources: { cpu: "500m", memory: "512Mi" },
    restart: { backoff_initial: "1s", backoff_max: "2m", stable_after: "1m", max_restarts: 10 },
    history: { successful: 10, failed: 20, versions: 5 },
  });
});

Deno.test("parsePrisnToml() returns every key of a cronjob file", () => {
  const text = `
name = "backup"
type = "cronjob"
entrypoint = "backup.sh"
schedule = "0 3 * * *"
timezone = "UTC"
timeout = "30m"
retries = 2
retry_backoff = "1m"
concurrency = "forbid"
catchup = "latest"
starting_deadline = "10m"
`;
  assert.deepEqual(parsePrisnToml(text), {
    name: "backup",
    type: "cronjob",
    entrypoint: "backup.sh",
    schedule: "0 3 * * *",
    timezone: "UTC",
    timeout: "30m",
    retries: 2,
    retry_backoff: "1m",
    concurrency: "forbid",
    catchup: "latest",
    starting_deadline: "10m",
  });
});

Deno.test("parsePrisnToml() accepts an empty file: every key is optional", () => {
  assert.deepEqual(parsePrisnToml(""), {});
  assert.deepEqual(parsePrisnToml("# nothing to say\n"), {});
});

Deno.test("parsePrisnToml() accepts health as a path or a table", () => {
  assert.deepEqual(parsePrisnToml('health = "/healthz"'), { health: "/healthz" });
  assert.deepEqual(parsePrisnToml('health = { path = "/up" }'), { health: { path: "/up" } });
});

Deno.test("parsePrisnToml() turns env numbers and booleans, and numeric quantities, into strings", () => {
  const toml = parsePrisnToml(`
env = { PORT_OFFSET = 1, RATIO = 0.5, ON = true }
resources = { cpu = 2, memory = 1073741824 }
`);
  assert.deepEqual(toml.env, { PORT_OFFSET: "1", RATIO: "0.5", ON: "true" });
  assert.deepEqual(toml.resources, { cpu: "2", memory: "1073741824" });
});

Deno.test("parsePrisnToml() reports TOML syntax errors with line and column", () => {
  assertRejects('name = "api"\nreplicas = \n', "prisn.toml:2:12: not valid TOML: invalid value");
  assertRejects(
    "replicas = 1\nreplicas = 2\n",
    "prisn.toml:2:1: not valid TOML: trying to redefine an already defined table or value",
  );
  assertRejects('name = "api', "prisn.toml:1:8: not valid TOML: unfinished string");
  assertRejects(
    '[resources\ncpu = "1"',
    "prisn.toml:1:11: not valid TOML: illegal character in key",
  );
});

Deno.test("parsePrisnToml() starts errors with the file name it is given", () => {
  assertRejects(
    "replicas = -1",
    "app/prisn.toml:1: replicas must be a non-negative integer (got -1)",
    "app/prisn.toml",
  );
  assertRejects("x = ", "app/prisn.toml:1:5: not valid TOML: invalid value", "app/prisn.toml");
});

Deno.test("parsePrisnToml() names the key, its line and what is allowed for a bad value", () => {
  const cases: Array<[string, string]> = [
    [
      'name = "api"\nreplicas = -1\n',
      "prisn.toml:2: replicas must be a non-negative integer (got -1)",
    ],
    ["replicas = 1.5", "prisn.toml:1: replicas must be a non-negative integer (got 1.5)"],
    ['replicas = "2"', 'prisn.toml:1: replicas must be a non-negative integer (got "2")'],
    ["\n\nport = 70000", "prisn.toml:3: port must be an integer from 1 to 65535 (got 70000)"],
    ["port = 0", "prisn.toml:1: port must be an integer from 1 to 65535 (got 0)"],
    ['type = "daemon"', 'prisn.toml:1: type must be "service", "job" or "cronjob" (got "daemon")'],
    [
      'concurrency = "skip"',
      'prisn.toml:1: concurrency must be "allow", "forbid" or "replace" (got "skip")',
    ],
    ['catchup = "all"', 'prisn.toml:1: catchup must be "none" or "latest" (got "all")'],
    [
      'port = 80\nbalancer = "bogus"',
      'prisn.toml:2: balancer must be "kernel" or "userspace" (got "bogus")',
    ],
    ['args = ["a", 3]', "prisn.toml:1: args[1] must be a string (got 3)"],
    ['args = "a b"', 'prisn.toml:1: args must be a list of strings (got "a b")'],
    [
      'timeout = "10x"',
      'prisn.toml:1: timeout must be a duration like "500ms", "10s", "5m" or "1h30m" (got "10x")',
    ],
    [
      "timeout = 10",
      'prisn.toml:1: timeout must be a duration like "500ms", "10s", "5m" or "1h30m" (got 10)',
    ],
    ['timeout = "0s"', 'prisn.toml:1: timeout must be longer than zero, like "10s" (got "0s")'],
    [
      'stop_grace = "soon"',
      'prisn.toml:1: stop_grace must be a duration like "500ms", "10s", "5m" or "1h30m" (got "soon")',
    ],
    [
      '[restart]\nbackoff_max = "x"',
      'prisn.toml:2: restart.backoff_max must be a duration like "500ms", "10s", "5m" or "1h30m" (got "x")',
    ],
    [
      "[restart]\nmax_restarts = -2",
      "prisn.toml:2: restart.max_restarts must be a non-negative integer (got -2)",
    ],
    [
      "[history]\nversions = 0",
      "prisn.toml:2: history.versions must be an integer of at least 1 (got 0)",
    ],
    [
      'entrypoint = "../x.py"',
      'prisn.toml:1: entrypoint must be a relative path inside the project, without ".." (got "../x.py")',
    ],
    [
      'entrypoint = "/etc/x.py"',
      'prisn.toml:1: entrypoint must be a relative path inside the project, without ".." (got "/etc/x.py")',
    ],
    [
      'entrypoint = "src/../../x.py"',
      'prisn.toml:1: entrypoint must be a relative path inside the project, without ".." (got "src/../../x.py")',
    ],
    [
      'timezone = "Mars/Base"',
      'prisn.toml:1: timezone must be an IANA time zone like "UTC" or "Europe/Berlin" (got "Mars/Base")',
    ],
    ['schedule = ""', 'prisn.toml:1: schedule must be a cron expression like "0 3 * * *" (got "")'],
    [
      "health = 5",
      'prisn.toml:1: health must be a path like "/healthz" or a table { path, interval, timeout, failures } (got 5)',
    ],
    ['health = "healthz"', 'prisn.toml:1: health must be a path like "/healthz" (got "healthz")'],
    ['[health]\ninterval = "5s"', "prisn.toml:1: health.path is required"],
    [
      '[health]\npath = "/x"\nfailures = 0',
      "prisn.toml:3: health.failures must be a positive integer (got 0)",
    ],
    [
      'resources = "big"',
      'prisn.toml:1: resources must be a table like { cpu = "500m", memory = "512Mi" } (got "big")',
    ],
    [
      '[resources]\ncpu = "lots"',
      'prisn.toml:2: resources.cpu "lots" is not a CPU quantity: use millicores like 250m or cores like 0.5, 1, 2',
    ],
    [
      '[resources]\nmemory = "512m"',
      'prisn.toml:2: resources.memory "512m" is not a memory quantity: did you mean "512Mi"?',
    ],
    [
      "[resources]\nmemory = true",
      'prisn.toml:2: resources.memory must be a quantity like "512Mi" or "1Gi" (got true)',
    ],
    ["[env]\nA = [1]", "prisn.toml:2: env.A must be a string, number or boolean (got [1])"],
    [
      '[env]\n"MY-VAR" = "1"',
      `prisn.toml:2: env key "MY-VAR" is not a valid environment variable name: use letters, digits and '_', not starting with a digit`,
    ],
    [
      'secrets = ["1KEY"]',
      `prisn.toml:1: secret "1KEY" is not a valid environment variable name: use letters, digits and '_', not starting with a digit`,
    ],
    [
      'runtime = "ruby"',
      'prisn.toml:1: runtime "ruby" is not supported: use python3, python3.X (e.g. python3.11), python, node, nodeNN (e.g. node20), bash, sh or deno',
    ],
    [
      'runtime = "python2"',
      'prisn.toml:1: runtime "python2" is not supported: use python3, python3.X (e.g. python3.11), python, node, nodeNN (e.g. node20), bash, sh or deno',
    ],
    [
      "timeout = 10:30:00",
      'prisn.toml:1: timeout must be a duration like "500ms", "10s", "5m" or "1h30m" (got 10:30:00.000)',
    ],
  ];
  for (const [text, message] of cases) assertRejects(text, message);
});

Deno.test("parsePrisnToml() checks the name with validateName()", () => {
  assertRejects(
    'name = "My_App"',
    `prisn.toml:1: name "My_App" is not valid: use 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit`,
  );
  assertRejects("name = 7", 'prisn.toml:1: name must be a string like "my-app" (got 7)');
});

Deno.test("parsePrisnToml() suggests the nearest key for an unknown one", () => {
  assertRejects(
    'name = "api"\nreplica = 2\n',
    'prisn.toml:2: unknown key "replica": did you mean "replicas"?',
  );
  assertRejects(
    'entrypiont = "a.py"',
    'prisn.toml:1: unknown key "entrypiont": did you mean "entrypoint"?',
  );
  assertRejects(
    'stopGrace = "1s"',
    'prisn.toml:1: unknown key "stopGrace": did you mean "stop_grace"?',
  );
  assertRejects(
    'retry-backoff = "1s"',
    'prisn.toml:1: unknown key "retry-backoff": did you mean "retry_backoff"?',
  );
});

Deno.test("parsePrisnToml() suggests keys inside tables, however the table is written", () => {
  const message = 'unknown key "resources.memroy": did you mean "resources.memory"?';
  assertRejects('[resources]\ncpu = "1"\nmemroy = "1Gi"\n', `prisn.toml:3: ${message}`);
  assertRejects('resources = { cpu = "1", memroy = "1Gi" }', `prisn.toml:1: ${message}`);
  assertRejects('name = "a"\nresources.memroy = "1Gi"', `prisn.toml:2: ${message}`);
  assertRejects(
    '[health]\npath = "/x"\nintervall = "1s"',
    'prisn.toml:3: unknown key "health.intervall": did you mean "health.interval"?',
  );
});

Deno.test("parsePrisnToml() points a table's key written at the top level to the table", () => {
  assertRejects(
    'memory = "1Gi"',
    'prisn.toml:1: unknown key "memory": did you mean "resources.memory"?',
  );
  assertRejects(
    "max_restarts = 3",
    'prisn.toml:1: unknown key "max_restarts": did you mean "restart.max_restarts"?',
  );
});

Deno.test("parsePrisnToml() takes an IP address for address and refuses anything else", () => {
  for (const address of ["127.0.0.1", "0.0.0.0", "::1", "fd00::2", "192.0.2.2"]) {
    assert.equal(parsePrisnToml(`address = "${address}"`).address, address);
  }
  for (const bad of ["localhost", "256.1.1.1", "1.2.3", "01.2.3.4", "::g", ""]) {
    assertRejects(
      `address = "${bad}"`,
      `prisn.toml:1: address must be an IP address like "127.0.0.1", "0.0.0.0" or "::1" (got "${bad}")`,
    );
  }
});

Deno.test("parsePrisnToml() lists the allowed keys when none is near", () => {
  assertRejects(
    "[resources]\ngpus = 1",
    'prisn.toml:2: unknown key "resources.gpus": resources takes cpu, memory',
  );
  assertRejects(
    "dependencies = []",
    'prisn.toml:1: unknown key "dependencies": prisn.toml takes name, type, runtime, entrypoint, command, args, env, port, balancer, address, replicas, schedule, timezone, health, resources, timeout, retries, retry_backoff, concurrency, catchup, starting_deadline, restart, stop_grace, drain_grace, readiness_timeout, history, logs, rollout, placement, deps, secrets, user, group',
  );
  assertRejects(
    '[databse]\nurl = "x"',
    'prisn.toml:1: unknown key "databse": prisn.toml takes name, type, runtime, entrypoint, command, args, env, port, balancer, address, replicas, schedule, timezone, health, resources, timeout, retries, retry_backoff, concurrency, catchup, starting_deadline, restart, stop_grace, drain_grace, readiness_timeout, history, logs, rollout, placement, deps, secrets, user, group',
  );
});

Deno.test("parsePrisnToml() reports the first problem by line when there are several", () => {
  assertRejects(
    "retries = -1\nreplicas = -1\n",
    "prisn.toml:1: retries must be a non-negative integer (got -1)",
  );
  assertRejects(
    "replicas = -1\nretries = -1\n",
    "prisn.toml:1: replicas must be a non-negative integer (got -1)",
  );
  assertRejects(
    'port = 0\n[resources]\nmemroy = "1"\n',
    "prisn.toml:1: port must be an integer from 1 to 65535 (got 0)",
  );
});

Deno.test("parsePrisnToml() finds the line of a key past multi-line strings and arrays", () => {
  const text = `args = [
  """
replica = 1
""",
  "--x=1",
]
replica = 2
`;
  assertRejects(text, 'prisn.toml:7: unknown key "replica": did you mean "replicas"?');
  assertRejects(
    'resources = {\n  cpu = "1", # "{"\n  memroy = "1Gi",\n}\nreplica = 1',
    'prisn.toml:3: unknown key "resources.memroy": did you mean "resources.memory"?',
  );
  assertRejects(
    'resources = {\n  cpu = "1",\n}\nreplica = 1',
    'prisn.toml:4: unknown key "replica": did you mean "replicas"?',
  );
  assertRejects(
    "replicas = 1\r\n\r\nreplica = 2\r\n",
    'prisn.toml:3: unknown key "replica": did you mean "replicas"?',
  );
});

Deno.test("parsePrisnToml() rejects keys that contradict the type", () => {
  assertRejects(
    'type = "service"\nschedule = "* * * * *"\n',
    'prisn.toml:2: schedule only applies to type = "cronjob" (type is "service")',
  );
  assertRejects(
    'type = "job"\n\nport = 80\n',
    'prisn.toml:3: port only applies to type = "service" (type is "job")',
  );
});

Deno.test("parsePrisnToml() rejects a restart backoff that starts above its maximum", () => {
  assertRejects(
    '[restart]\nbackoff_initial = "10s"\nbackoff_max = "5s"\n',
    "prisn.toml:2: restart.backoff_initial (10s) must not be longer than restart.backoff_max (5s)",
  );
  assertRejects(
    '[restart]\nbackoff_initial = "2m"\n',
    "prisn.toml:2: restart.backoff_initial (2m) must not be longer than restart.backoff_max (1m, the default)",
  );
});

Deno.test("validateName() accepts DNS labels of 1 to 63 characters", () => {
  for (const name of ["api", "a", "7", "my-app-2", "a--b", "x".repeat(63)]) validateName(name);
});

Deno.test("validateName() rejects anything else with one line saying what is allowed", () => {
  for (const name of ["", "My_App", "Api", "-x", "x-", "x".repeat(64), "a.b", "a b", "ä"]) {
    assert.throws(
      () => validateName(name),
      isPrisnError(
        "INVALID",
        `name "${name}" is not valid: use 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit`,
      ),
      name,
    );
  }
  const rest = " is not valid: use 1-63 lowercase letters, digits or '-', starting and ending " +
    "with a letter or digit";
  assert.throws(
    () => validateName("x".repeat(5000)),
    isPrisnError("INVALID", `name "${"x".repeat(67)}..."${rest}`),
    "a long name is cut",
  );
  assert.throws(() => validateName("a\nb"), isPrisnError("INVALID", `name "a\\nb"${rest}`));
});

Deno.test("PRISN_TOML_KEYS lists every key once, tables' keys dotted", () => {
  assert.equal(new Set(PRISN_TOML_KEYS).size, PRISN_TOML_KEYS.length);
  for (
    const key of [
      "name",
      "replicas",
      "resources",
      "resources.memory",
      "health.path",
      "restart.max_restarts",
      "history.versions",
      "secrets",
    ]
  ) {
    assert.ok(PRISN_TOML_KEYS.includes(key), key);
  }
  assert.ok(!PRISN_TOML_KEYS.some((k) => k.startsWith("env.")));
});

Deno.test("PRISN_TOML_DEFAULTS are themselves valid prisn.toml values", () => {
  const { health, restart, history, logs, ...top } = PRISN_TOML_DEFAULTS;
  const toml = parsePrisnToml(
    [
      ...Object.entries(top).map(([k, v]) => `${k} = ${JSON.stringify(v)}`),
      `health = { path = "/", interval = "${health.interval}", timeout = "${health.timeout}", failures = ${health.failures} }`,
      `restart = ${JSON.stringify(restart).replace(/"(\w+)":/g, "$1 = ")}`,
      `history = ${JSON.stringify(history).replace(/"(\w+)":/g, "$1 = ")}`,
      `logs = { rate_limit = "${logs.rate_limit}" }`,
    ].join("\n"),
  );
  assert.deepEqual(toml.logs, { rate_limit: "1Mi" });
  assert.equal(toml.stop_grace, "10s");
  assert.deepEqual(toml.history, { successful: 100, failed: 10, versions: 5 });
});

Deno.test("parsePrisnToml() takes user and group as account names; group needs user", () => {
  assert.deepEqual(parsePrisnToml('user = "app"'), { user: "app" });
  const both = parsePrisnToml('user = "svc_web.1"\ngroup = "web-data"');
  assert.deepEqual([both.user, both.group], ["svc_web.1", "web-data"]);
  assertRejects(
    'user = "-r"',
    'prisn.toml:1: user must be a user name like "app" (got "-r")',
  );
  assertRejects(
    "user = 1000",
    'prisn.toml:1: user must be a user name like "app" (got 1000)',
  );
  assertRejects(
    'name = "x"\nuser = "app"\ngroup = "a b"',
    'prisn.toml:3: group must be a group name like "app" (got "a b")',
  );
  assertRejects(
    'user = "' + "a".repeat(33) + '"',
    `prisn.toml:1: user must be a user name like "app" (got "${"a".repeat(33)}")`,
  );
  assertRejects(
    'name = "x"\ngroup = "app"',
    'prisn.toml:2: group = "app" needs user: set the user the processes run as too',
  );
});

Deno.test("parsePrisnToml() takes logs.rate_limit as a byte quantity or false, and rollout.max_parallel", () => {
  assert.deepEqual(parsePrisnToml('[logs]\nrate_limit = "256Ki"').logs, { rate_limit: "256Ki" });
  assert.deepEqual(parsePrisnToml("[logs]\nrate_limit = false").logs, { rate_limit: false });
  assert.deepEqual(parsePrisnToml("[rollout]\nmax_parallel = 3").rollout, { max_parallel: 3 });
  assertRejects(
    '[logs]\nrate_limit = "1MB"',
    'prisn.toml:2: logs.rate_limit "1MB" is not a memory quantity: did you mean "1Mi"?',
  );
  assertRejects(
    "[logs]\nrate_limit = true",
    'prisn.toml:2: logs.rate_limit must be a byte quantity per second like "1Mi", or false (got true)',
  );
  assertRejects(
    "[rollout]\nmax_parallel = 0",
    "prisn.toml:2: rollout.max_parallel must be a positive integer (got 0)",
  );
});

// --- command and deps -----------------------------------------------------------------------------

Deno.test("parsePrisnToml() reads command as an argv list and [deps] as files or false", () => {
  assert.deepEqual(parsePrisnToml('command = ["gunicorn", "--bind", "127.0.0.1:${PORT}"]'), {
    command: ["gunicorn", "--bind", "127.0.0.1:${PORT}"],
  });
  assert.deepEqual(
    parsePrisnToml('[deps]\npython = "requirements/prod.txt"\nnode = false'),
    { deps: { python: "requirements/prod.txt", node: false } },
  );
  assert.deepEqual(parsePrisnToml('[deps]\nnode = "web/package.json"'), {
    deps: { node: "web/package.json" },
  });
});

Deno.test("parsePrisnToml() refuses a shell-string command, bad $ references and conflicts", () => {
  assertRejects(
    'command = "gunicorn app:app --bind :$PORT"',
    'prisn.toml:1: command must be a list of strings like ["gunicorn", "--bind", "127.0.0.1:$PORT"] (a shell string is not run: prisn starts the program itself, without a shell) (got "gunicorn app:app --bind :$PORT")',
  );
  assertRejects(
    "command = []",
    'prisn.toml:1: command must be a list of strings like ["gunicorn", "--bind", "127.0.0.1:$PORT"] (a shell string is not run: prisn starts the program itself, without a shell) (got [])',
  );
  assertRejects(
    'command = ["", "x"]',
    'prisn.toml:1: command[0] must name a program first (got "")',
  );
  assertRejects(
    'command = ["echo", "costs $5"]',
    'prisn.toml:1: command argument "costs $5": "$" must start a variable like $PORT or ${PORT} (write $$ for a literal $)',
  );
  assertRejects(
    'entrypoint = "main.py"\ncommand = ["python3", "main.py"]',
    "prisn.toml:1: entrypoint and command cannot both be set: keep one (command runs a program, entrypoint a file of the project)",
  );
  assertRejects(
    'command = ["serve"]\nargs = ["--fast"]',
    "prisn.toml:2: args only apply to an entrypoint: put the arguments into command",
  );
});

Deno.test("parsePrisnToml() refuses [deps] values that are not project files or false", () => {
  assertRejects(
    "[deps]\npython = true",
    'prisn.toml:2: deps.python must be a requirements file or pyproject.toml like "requirements.txt", or false (got true)',
  );
  assertRejects(
    '[deps]\npython = "../requirements.txt"',
    'prisn.toml:2: deps.python must be a relative path inside the project, without ".." (got "../requirements.txt")',
  );
  assertRejects(
    '[deps]\nnode = "deps.json"',
    'prisn.toml:2: deps.node must be a package.json like "package.json" or "web/package.json", or false (got "deps.json")',
  );
  assertRejects(
    '[deps]\nruby = "Gemfile"',
    'prisn.toml:2: unknown key "deps.ruby": deps takes python, node',
  );
});
