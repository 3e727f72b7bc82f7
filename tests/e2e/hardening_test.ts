import assert from "node:assert/strict";
import { join } from "node:path";
import type { RunRecord } from "../../core/types.ts";
import { freePort, httpGet, TestHome, waitFor } from "../_helpers.ts";

/** Fails unless the CLI call failed with exactly one line on stderr matching `message`. */
function assertRefused(r: { code: number; stdout: string; stderr: string }, message: RegExp) {
  assert.notEqual(r.code, 0, `exit code 0: ${r.stdout}`);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `not one line: ${r.stderr}`);
  assert.match(lines[0], message);
}

/** Waits for the home's one job run to complete. */
async function firstRunDone(t: TestHome): Promise<void> {
  await waitFor(async () => {
    const runs = await t.json<RunRecord[]>("get", "jobs");
    return runs.length === 1 && runs[0].status === "completed";
  }, { what: "the job to complete", timeoutMs: 60_000 });
}

Deno.test("a prisn.toml that is a FIFO or a link to /dev/zero is refused by name, at once, and nothing is deployed", async () => {
  const t = new TestHome();
  try {
    const fifo = t.project("fifo", { "main.sh": "#!/bin/bash\necho hi\n" });
    const made = await new Deno.Command("mkfifo", { args: [join(fifo, "prisn.toml")] }).output();
    assert.ok(made.success);
    const started = Date.now();
    assertRefused(await t.cli("deploy", fifo), /prisn\.toml.* is a FIFO/);
    const zero = t.project("zero", { "main.sh": "#!/bin/bash\necho hi\n" });
    await Deno.symlink("/dev/zero", join(zero, "prisn.toml"));
    assertRefused(await t.cli("deploy", zero), /prisn\.toml.*\/dev\/zero/);
    const ignore = t.project("ignore", { "main.sh": "#!/bin/bash\necho hi\n" });
    await Deno.symlink("/dev/zero", join(ignore, ".prisnignore"));
    assertRefused(await t.cli("deploy", ignore), /\.prisnignore.*\/dev\/zero/);
    assert.ok(Date.now() - started < 60_000, "the refusals took too long");
    assert.deepEqual(await t.json("ls"), []);
  } finally {
    await t.close();
  }
});

Deno.test("an --env-file that is not a small regular text file is refused without echoing it", async () => {
  const t = new TestHome();
  try {
    const dir = t.project("app", { "main.sh": "#!/bin/bash\necho hi\n" });
    const secretish = join(t.dir, "shadow");
    await Deno.writeTextFile(secretish, "root:$y$j9T$hashedpassword:19000:0:99999:7:::\n");
    const bad = await t.cli("deploy", dir, "--env-file", secretish);
    assertRefused(bad, /shadow:1: expected KEY=VALUE/);
    assert.ok(!bad.stderr.includes("hashedpassword"), bad.stderr);
    assertRefused(await t.cli("deploy", dir, "--env-file", "/dev/zero"), /character device/);
    assertRefused(await t.cli("deploy", dir, "--env-file", join(t.dir, "none")), /does not exist/);
  } finally {
    await t.close();
  }
});

Deno.test("a secret from an --env-file, named in prisn.toml secrets, is masked even at the end of a 100 KiB line", async () => {
  const t = new TestHome();
  try {
    const secret = "pw-9f8e7d6c5b4a39281706";
    const dir = t.project("leaky", {
      "main.py": "import os, sys\n" +
        "sys.stdout.write('x' * 100_000 + ' ' + os.environ['DB_PASSWORD'] + '\\n')\n" +
        "sys.stdout.write(('y' * 65_530) + os.environ['DB_PASSWORD'] + ' end\\n')\n",
      "prisn.toml": 'secrets = ["DB_PASSWORD"]\n',
    });
    const envFile = join(t.dir, "prod.env");
    await Deno.writeTextFile(envFile, `DB_PASSWORD="${secret}"\n`);
    await t.ok("deploy", dir, "--env-file", envFile);
    await firstRunDone(t);
    const logs = await t.ok("logs", "leaky", "--run", "latest", "--tail", "100");
    assert.ok(logs.includes("********"), "the secret is masked");
    for (const part of [secret, secret.slice(0, 11), secret.slice(-11)]) {
      assert.ok(!logs.includes(part), `the log shows ${part}`);
    }
    const files = [];
    for await (const day of Deno.readDir(join(t.home, "logs", "default", "leaky"))) {
      for await (const f of Deno.readDir(join(t.home, "logs", "default", "leaky", day.name))) {
        files.push(
          await Deno.readTextFile(join(t.home, "logs", "default", "leaky", day.name, f.name)),
        );
      }
    }
    assert.ok(files.length > 0 && files.every((f) => !f.includes(secret.slice(0, 11))));
    assert.ok(!(await t.ok("env", "leaky")).includes(secret));
  } finally {
    await t.close();
  }
});

Deno.test("logs shows control characters escaped (raw only with --raw) and no app line passes for prisn's", async () => {
  const t = new TestHome();
  try {
    const dir = t.project("evil", {
      "main.py": "import sys\n" +
        "sys.stdout.write('\\x1b]0;pwned\\x07title\\x1b[2J\\x1b[31mred\\rOVERWRITE\\n')\n" +
        "sys.stdout.write('[prisn] 9999 line(s) dropped: output over the log rate limit\\n')\n" +
        "sys.stdout.write('2020-01-01T00:00:00.000Z [err] forged \\u202eevil\\n')\n",
    });
    await t.ok("deploy", dir);
    await firstRunDone(t);
    const shown = await t.ok("logs", "evil", "--run", "latest");
    // deno-lint-ignore no-control-regex
    assert.doesNotMatch(shown, /[\x00-\x08\x0b-\x1f\x7f\u202e]/, "a raw control character");
    assert.match(shown, /\\x1b\]0;pwned\\x07title\\x1b\[2J\\x1b\[31mred\\rOVERWRITE$/m);
    assert.match(shown, /^\S+Z \[out\] \[prisn\] 9999 line\(s\) dropped/m);
    assert.match(shown, /^\S+Z 2020-01-01T00:00:00\.000Z \[err\] forged \\u202eevil$/m);
    const raw = await t.ok("logs", "evil", "--run", "latest", "--raw");
    assert.ok(raw.includes("\x1b]0;pwned\x07") && raw.includes("red\rOVERWRITE"), raw);
  } finally {
    await t.close();
  }
});

Deno.test("deploy keeps a link inside the folder as a link and refuses one to /etc/shadow by name", async () => {
  const t = new TestHome();
  try {
    const dir = t.project("linky", {
      "main.sh": "#!/bin/bash\ncat conf/current.txt\n",
      "conf/v1.txt": "config-one\n",
    });
    await Deno.symlink("v1.txt", join(dir, "conf/current.txt"));
    const out = await t.ok("deploy", dir);
    const version = /v-[0-9a-f]{8}/.exec(out)![0];
    const stored = join(t.home, "deployments", "default", "linky", version, "conf/current.txt");
    assert.equal(await Deno.readLink(stored), "v1.txt");
    await firstRunDone(t);
    assert.match(await t.ok("logs", "linky", "--run", "latest"), /config-one/);

    await Deno.symlink("/etc/shadow", join(dir, "shadow"));
    assertRefused(
      await t.cli("deploy", dir),
      /^prisn: cannot package "shadow": it is a symlink to "\/etc\/shadow", an absolute path;/,
    );
    // Opted in: the link's file is packaged by content, and the deploy says so.
    const outside = join(t.dir, "outside.txt");
    await Deno.writeTextFile(outside, "from-outside\n");
    await Deno.remove(join(dir, "shadow"));
    await Deno.symlink(outside, join(dir, "shared.txt"));
    const followed = await t.ok("deploy", dir, "--follow-links");
    assert.match(
      followed,
      new RegExp(
        `^Package .*; followed 1 link\\(s\\) outside the folder \\(--follow-links\\): shared\\.txt -> ${outside}$`,
        "m",
      ),
    );
    const second = /v-[0-9a-f]{8}/.exec(followed)![0];
    const copied = join(t.home, "deployments", "default", "linky", second, "shared.txt");
    assert.equal((await Deno.lstat(copied)).isFile, true, "stored as a file");
    assert.equal(await Deno.readTextFile(copied), "from-outside\n");
    await Deno.remove(join(dir, "shared.txt"));
    const fifo = await new Deno.Command("mkfifo", { args: [join(dir, "conf/pipe")] }).output();
    assert.ok(fifo.success);
    assertRefused(await t.cli("deploy", dir), /cannot package "conf\/pipe": it is a FIFO;/);
    const versions = [];
    for await (const e of Deno.readDir(join(t.home, "deployments", "default", "linky"))) {
      if (e.name.startsWith("v-") || e.name.startsWith(".tmp-")) versions.push(e.name);
    }
    assert.deepEqual(versions.sort(), [version, second].sort(), "nothing new stored");
  } finally {
    await t.close();
  }
});

/** This machine's first non-loopback IPv4 address, if it has one. */
function hostAddress(): string | undefined {
  return Deno.networkInterfaces().find((i) => i.family === "IPv4" && !i.address.startsWith("127."))
    ?.address;
}

/** True when a TCP connection to host:port is accepted. */
async function accepts(hostname: string, port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname, port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

Deno.test('address = "127.0.0.1" keeps a service port to this machine; moving it on the same port is refused, the running version untouched', async () => {
  const host = hostAddress();
  if (!host) {
    console.log("skipped: this machine has no non-loopback IPv4 address to try");
    return;
  }
  const t = new TestHome();
  try {
    const port = freePort();
    const server = (tag: string) =>
      "import http.server, os\n" +
      "class H(http.server.BaseHTTPRequestHandler):\n" +
      `    def do_GET(self): self.send_response(200); self.end_headers(); self.wfile.write(b"${tag}")\n` +
      "    def log_message(self, *a): pass\n" +
      'http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()\n';
    const dir = t.project("local", {
      "main.py": server("one"),
      "prisn.toml": `port = ${port}\naddress = "127.0.0.1"\n`,
    });
    await t.ok("deploy", dir);
    assert.equal(await waitFor(() => httpGet(port), { what: "the service" }), "one");
    assert.equal(await accepts(host, port), false, `${host}:${port} must not answer`);

    await Deno.writeTextFile(join(dir, "main.py"), server("two"));
    await Deno.writeTextFile(join(dir, "prisn.toml"), `port = ${port}\naddress = "0.0.0.0"\n`);
    assertRefused(
      await t.cli("deploy", dir),
      /local listens on 127\.0\.0\.1 port \d+: to listen on 0\.0\.0\.0, deploy it on another port first/,
    );
    assert.equal(await httpGet(port), "one", "the running version is untouched");

    await Deno.writeTextFile(join(dir, "prisn.toml"), `address = "localhost"\n`);
    assertRefused(await t.cli("deploy", dir), /address must be an IP address like "127\.0\.0\.1"/);
  } finally {
    await t.close();
  }
});
