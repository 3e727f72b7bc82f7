/**
 * prisn.toml `user`/`group` end to end: the real CLI, a real root agent, a real unprivileged user
 * made for the test (useradd, removed afterwards), real python, bash and a venv built by prepare.
 * The processes report who they are and try to read what must stay closed to them.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { RunRecord } from "../../core/types.ts";
import { buildWheel } from "../fixtures/envs_wheel.ts";
import {
  alive,
  assertOneLineError,
  finished,
  freePort,
  hasCommand,
  httpGet,
  TestHome,
  waitFor,
} from "../_helpers.ts";

const skip = Deno.uid() !== 0
  ? "the tests do not run as root, and only a root agent runs processes as another user"
  : !await hasCommand("useradd", ["--help"])
  ? "useradd is not installed, so no test user can be made"
  : !await hasCommand("python3", ["-c", "import venv, ensurepip, zipfile"])
  ? "python3 with venv is not installed"
  : undefined;
if (skip) console.log(`e2e/run_as_test: skipped: ${skip}`);

const repo = new URL("../..", import.meta.url).pathname;

async function run(command: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${command} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text.trim();
}

/** A system user (with its own group) and a separate group, made for `fn` and removed after. */
async function withTestUser(
  fn: (user: { name: string; uid: number; gid: number; group: string }) => Promise<void>,
): Promise<void> {
  const suffix = crypto.randomUUID().slice(0, 8);
  const name = `prisn-test-${suffix}`;
  const group = `prisn-tg-${suffix}`;
  await run("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name);
  try {
    await run("groupadd", "--system", group);
    try {
      await fn({
        name,
        uid: Number(await run("id", "-u", name)),
        gid: Number(await run("id", "-g", name)),
        group,
      });
    } finally {
      await run("groupdel", group).catch(() => {});
    }
  } finally {
    await run("userdel", name).catch(() => {}); // with the user's own group
  }
}

/**
 * A python service answering GET / with who it runs as, what it can import from its venv, and
 * for each of $TARGETS ({label: path}) "ok" or the errno name its read (or listing, for a folder)
 * failed with.
 */
const PROBE = `import errno, http.server, json, os, socket
import greet

def attempt(path):
    try:
        if path.endswith(".sock"):
            socket.socket(socket.AF_UNIX).connect(path)
        elif os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        targets = json.loads(os.environ["TARGETS"])
        body = json.dumps({
            "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "egid": os.getegid(),
            "groups": sorted(os.getgroups()), "home": os.environ.get("HOME"),
            "user": os.environ.get("USER"), "secret": os.environ.get("API_KEY"),
            "greet": greet.VALUE,
            "tries": {label: attempt(path) for label, path in targets.items()},
        }).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
`;

/** A TOML basic string holding `text` (JSON's escapes are TOML's). */
const tomlString = (text: string) => JSON.stringify(text);

Deno.test({
  name:
    "user in prisn.toml: a service, a job and a cronjob run as that user, reach their version and venv, and nothing else of PRISN_HOME; unknown users and groups are refused",
  ignore: skip !== undefined,
  async fn() {
    await withTestUser(async (u) => {
      const h = new TestHome();
      try {
        const port = freePort();
        const dir = h.project("probe", { "main.py": PROBE, "requirements.txt": "greet==1.0\n" });
        const wheel = await buildWheel(join(h.dir, "wheel"), { name: "greet", value: "from-venv" });
        await Deno.mkdir(join(dir, "wheels"));
        await Deno.copyFile(wheel, join(dir, "wheels", "greet-1.0-py3-none-any.whl"));
        const home = h.home;
        const writeToml = (user: string, targets: Record<string, string>) =>
          Deno.writeTextFile(
            join(dir, "prisn.toml"),
            `user = "${user}"\nport = ${port}\nsecrets = ["API_KEY"]\n` +
              `drain_grace = "1s"\nstop_grace = "2s"\n` +
              `[env]\nAPI_KEY = "s3cret-value"\nTARGETS = ${tomlString(JSON.stringify(targets))}\n`,
          );

        // The test's temp folder is 0700: the user could not reach PRISN_HOME below it.
        await writeToml(u.name, {});
        assertOneLineError(
          await h.cli("deploy", dir),
          new RegExp(
            `^prisn: user "${u.name}" cannot reach PRISN_HOME ${home}: ${h.dir} is closed to it \\(mode 0700\\): run this agent with a PRISN_HOME under folders others may traverse, e\\.g\\. /var/lib/prisn$`,
          ),
          "a PRISN_HOME the user cannot reach",
        );
        assert.deepEqual(await h.json("ls"), [], "nothing deployed");
        await Deno.chmod(h.dir, 0o711);

        await h.ok("token", "create", "ci"); // so that tokens.json exists
        const other = h.project("other", { "main.sh": "#!/bin/bash\necho other\n" });
        const otherVersion = /v-[0-9a-f]{8}/.exec(await h.ok("deploy", other))![0];
        const targets = {
          db: join(home, "prisn.db"),
          wal: join(home, "prisn.db-wal"),
          tokens: join(home, "tokens.json"),
          socket: join(home, "prisn.sock"),
          agentLog: join(home, "state", "agent.log"),
          home,
          deployments: join(home, "deployments"),
          otherDeployment: join(home, "deployments", "default", "other"),
          otherVersion: join(home, "deployments", "default", "other", otherVersion),
          otherLogs: join(home, "logs", "default", "other"),
          logs: join(home, "logs"),
          metadata: join(home, "deployments", "default", "probe", "metadata.json"),
          envs: join(home, "envs"),
          ownToml: "prisn.toml", // holds API_KEY's value: the process gets it as env only
          ownFolder: ".",
          ownFile: "main.py",
        };
        await writeToml(u.name, targets);
        await h.ok("deploy", dir);
        const answer = JSON.parse(
          await waitFor(() => httpGet(port), { timeoutMs: 30_000, what: "the probe service" }),
        );
        const groups = (await run("id", "-G", u.name)).split(" ").map(Number).sort((a, b) => a - b);
        assert.deepEqual(
          [answer.uid, answer.euid, answer.gid, answer.egid, answer.groups],
          [u.uid, u.uid, u.gid, u.gid, groups],
          "the replica runs as the user, with its own groups",
        );
        const userHome = (await run("getent", "passwd", u.name)).split(":")[5];
        assert.deepEqual([answer.home, answer.user], [userHome, u.name], "HOME and USER");
        assert.equal(answer.secret, "s3cret-value", "secrets come as env");
        assert.equal(answer.greet, "from-venv", "the venv prepare built as root is usable");
        const closed = Object.keys(targets).filter((k) => !k.startsWith("own"));
        assert.deepEqual(answer.tries, {
          ...Object.fromEntries(closed.map((k) => [k, "EACCES"])),
          ownToml: "EACCES",
          ownFolder: "ok",
          ownFile: "ok",
        });
        assert.match(await h.ok("logs", "other"), /other/, "the root job ran as before");
        assert.match(await h.ok("get", "probe"), new RegExp(`^Runs as: +${u.name}$`, "m"));
        assert.doesNotMatch(await h.ok("get", "other"), /^Runs as:/m, "root's job says nothing");

        // A redeploy naming an unknown user is refused before anything changes.
        const before = (await h.json<{ version: string }>("get", "probe")).version;
        await writeToml("prisn-no-such-user", targets);
        assertOneLineError(
          await h.cli("deploy", dir),
          /^prisn: user "prisn-no-such-user" does not exist on this host: create it \(useradd --system prisn-no-such-user\) or change user in prisn\.toml$/,
          "an unknown user",
        );
        assert.equal((await h.json<{ version: string }>("get", "probe")).version, before);
        assert.ok(await httpGet(port), "the running version still answers");

        // A job with a group (then its only group), a cronjob, and root as root.
        const whoami = 'echo "uid=$(id -u) gid=$(id -g) groups=$(id -G) pid=$$ home=$HOME"\n' +
          `cat ${join(home, "prisn.db")} >/dev/null 2>&1 || echo "db closed"\n`;
        const job = h.project("who", {
          "main.sh": `#!/bin/bash\n${whoami}`,
          "prisn.toml": `user = "${u.name}"\ngroup = "prisn-no-such-group"\n`,
        });
        assertOneLineError(
          await h.cli("deploy", job),
          /^prisn: group "prisn-no-such-group" does not exist on this host: create it \(groupadd prisn-no-such-group\) or change group in prisn\.toml$/,
          "an unknown group",
        );
        await Deno.writeTextFile(
          join(job, "prisn.toml"),
          `user = "${u.name}"\ngroup = "${u.group}"\n`,
        );
        const groupGid = Number((await run("getent", "group", u.group)).split(":")[2]);
        await h.ok("deploy", job);
        const cron = h.project("tick", {
          "main.sh": `#!/bin/bash\n${whoami}`,
          "prisn.toml": `user = "${u.name}"\nschedule = "* * * * * *"\n`,
        });
        await h.ok("deploy", cron);
        const rooted = h.project("rooted", {
          "main.sh": `#!/bin/bash\n${whoami}`,
          "prisn.toml": `user = "root"\n`,
        });
        await h.ok("deploy", rooted);
        const ranAs = async (name: string) => {
          const run = await waitFor(
            async () => (await h.json<RunRecord[]>("get", "jobs", name)).find(finished),
            { timeoutMs: 20_000, what: `a finished run of ${name}` },
          );
          const log = await h.ok("logs", run.id);
          return { run, log };
        };
        const who = await ranAs("who");
        assert.match(
          who.log,
          new RegExp(`uid=${u.uid} gid=${groupGid} groups=${groupGid} pid=${who.run.pid} `),
          "the job runs as the user and the group alone, as the very pid prisn recorded",
        );
        assert.match(who.log, /db closed/);
        const tick = await ranAs("tick");
        assert.match(tick.log, new RegExp(`uid=${u.uid} gid=${u.gid} `), "the cron run too");
        assert.match(tick.log, /db closed/);
        await h.ok("delete", "tick");
        const root = await ranAs("rooted");
        assert.match(root.log, /uid=0 gid=0 /, 'user = "root" runs as root');
        assert.doesNotMatch(root.log, /db closed/);

        await refusedByNonRootAgent(u);
      } finally {
        await h.close();
      }
    });
  },
});

/**
 * The user's own CLI and the agent it starts, not root: `user` is refused, nothing deployed. Deno
 * and its npm cache sit in root's folders, so the test gives the user a hard link to the binary
 * and a hard-linked copy of the cache (no bytes copied).
 */
async function refusedByNonRootAgent(u: { name: string; uid: number; gid: number }) {
  const dir = await Deno.makeTempDir({ prefix: "prisn-runas-agent-" });
  const env = {
    PATH: "/usr/bin:/bin",
    HOME: "/nonexistent",
    PRISN_HOME: join(dir, "home"),
    DENO_DIR: join(dir, "deno-dir"),
  };
  const cli = (...args: string[]) =>
    new Deno.Command("setpriv", {
      args: [`--reuid=${u.uid}`, `--regid=${u.gid}`, "--init-groups", "--", join(dir, "deno")]
        .concat(["run", "-A", "--quiet", join(repo, "main.ts"), ...args]),
      env,
      clearEnv: true,
      stdin: "null",
    }).output().then((o) => ({
      code: o.code,
      stdout: new TextDecoder().decode(o.stdout),
      stderr: new TextDecoder().decode(o.stderr),
    }));
  try {
    await Deno.chmod(dir, 0o711);
    try {
      await Deno.link(Deno.execPath(), join(dir, "deno"));
    } catch (e) {
      console.log(`skipped the non-root agent: cannot hard-link deno into /tmp (${e})`);
      return;
    }
    const info = JSON.parse(await run(Deno.execPath(), "info", "--json"));
    await Deno.mkdir(env.DENO_DIR);
    await run("cp", "-al", join(info.denoDir, "npm"), env.DENO_DIR);
    await run("find", env.DENO_DIR, "-type", "d", "-exec", "chown", u.name, "{}", "+");
    await Deno.mkdir(env.PRISN_HOME);
    await Deno.chown(env.PRISN_HOME, u.uid, u.gid);
    const project = join(dir, "project");
    await Deno.mkdir(project, { mode: 0o755 });
    await Deno.writeTextFile(join(project, "main.sh"), "#!/bin/bash\necho hi\n", { mode: 0o755 });
    await Deno.writeTextFile(join(project, "prisn.toml"), `user = "${u.name}"\n`, { mode: 0o644 });
    assertOneLineError(
      await cli("deploy", project),
      new RegExp(
        `^prisn: user = "${u.name}" needs an agent running as root \\(this one runs as uid ${u.uid}\\): run the agent as root, or remove user from prisn\\.toml$`,
      ),
      "user on a non-root agent",
    );
    const listed = await cli("ls", "-o", "json");
    assert.deepEqual(JSON.parse(listed.stdout), [], `nothing deployed (${listed.stderr})`);
  } finally {
    await cli("agent", "stop").catch(() => {});
    const pid = Number(
      await Deno.readTextFile(join(env.PRISN_HOME, "state", "agent.pid")).catch(() => ""),
    );
    if (pid && alive(pid)) Deno.kill(pid, "SIGKILL");
    await Deno.remove(dir, { recursive: true });
  }
}
