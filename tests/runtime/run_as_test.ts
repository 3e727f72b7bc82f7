import assert from "node:assert/strict";
import { join } from "node:path";
import { paths } from "../../core/paths.ts";
import {
  checkHomeReachable,
  openTo,
  resolveRunAs,
  type RunAs,
  runAsCommand,
  runAsEnv,
} from "../../runtime/run_as.ts";
import { isPrisnError } from "../_helpers.ts";

const ROOT = Deno.uid() === 0;
const notRoot = ROOT ? false : "run as root: the test changes owners and modes of files";

/** nobody/nogroup: a user every Debian has, never used by prisn itself. */
const NOBODY: RunAs = {
  user: "nobody",
  uid: 65534,
  gid: 65534,
  groups: [65534],
  home: "/nonexistent",
  setpriv: "/usr/bin/setpriv",
};

function mode(path: string): string {
  return (Deno.statSync(path).mode! & 0o7777).toString(8).padStart(4, "0");
}

Deno.test("resolveRunAs() refuses user on an agent that is not root, whoever the user", async () => {
  for (const user of ["app", "root"]) {
    await assert.rejects(
      resolveRunAs({ user }, { agentUid: 1000 }),
      isPrisnError(
        "INVALID",
        `user = "${user}" needs an agent running as root (this one runs as uid 1000): run the agent as root, or remove user from prisn.toml`,
      ),
    );
  }
  assert.equal(await resolveRunAs({}, { agentUid: 1000 }), undefined, "no user: nothing to do");
});

Deno.test("resolveRunAs() refuses an unknown user or group in one line; root alone is root", async () => {
  await assert.rejects(
    resolveRunAs({ user: "prisn-no-such-user" }, { agentUid: 0 }),
    isPrisnError(
      "INVALID",
      'user "prisn-no-such-user" does not exist on this host: create it (useradd --system prisn-no-such-user) or change user in prisn.toml',
    ),
  );
  await assert.rejects(
    resolveRunAs({ user: "root", group: "prisn-no-such-group" }, { agentUid: 0 }),
    isPrisnError(
      "INVALID",
      'group "prisn-no-such-group" does not exist on this host: create it (groupadd prisn-no-such-group) or change group in prisn.toml',
    ),
  );
  assert.equal(await resolveRunAs({ user: "root" }, { agentUid: 0 }), undefined);
  const nobody = await resolveRunAs({ user: "nobody" }, { agentUid: 0 });
  assert.equal(nobody?.uid, 65534);
  assert.ok(nobody?.groups.includes(nobody.gid), "its primary group is among its groups");
  const grouped = await resolveRunAs({ user: "nobody", group: "root" }, { agentUid: 0 });
  assert.deepEqual([grouped?.gid, grouped?.groups], [0, [0]], "with group, that group alone");
});

Deno.test("runAsCommand() wraps the program in setpriv, args verbatim; runAsEnv() is the user's", () => {
  assert.deepEqual(runAsCommand(NOBODY, "/usr/bin/python3", ["-c", "$x; rm -rf /"]), {
    command: "/usr/bin/setpriv",
    args: [
      "--reuid=65534",
      "--regid=65534",
      "--init-groups",
      "--",
      "/usr/bin/python3",
      "-c",
      "$x; rm -rf /",
    ],
  });
  assert.deepEqual(
    runAsCommand({ ...NOBODY, gid: 7, group: "lp", groups: [7] }, "/bin/true", []).args.slice(0, 3),
    ["--reuid=65534", "--regid=7", "--groups=7"],
  );
  assert.deepEqual(runAsEnv(NOBODY), { HOME: "/nonexistent", USER: "nobody", LOGNAME: "nobody" });
});

Deno.test({
  name:
    "openTo() opens the version (root:GID 0750, prisn.toml 0400) and its env through 0711 folders, and closes the rest of PRISN_HOME",
  ignore: notRoot !== false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "prisn-runas-" });
    try {
      await Deno.chmod(dir, 0o711); // the folder above PRISN_HOME lets others through
      const p = paths(join(dir, "home"));
      const version = join(p.deployments, "api", "v-1");
      const other = join(p.deployments, "other", "v-2");
      const env = join(p.envs, "python3-0123456789ab");
      for (const d of [version, other, env, p.logs, p.state, join(p.envs, ".locks")]) {
        await Deno.mkdir(d, { recursive: true, mode: 0o755 });
      }
      await Deno.chmod(join(p.deployments, "other"), 0o700);
      for (const f of [p.db, join(p.home, "tokens.json"), join(p.state, "agent.log")]) {
        await Deno.writeTextFile(f, "x", { mode: 0o644 });
      }
      await Deno.writeTextFile(join(version, "prisn.toml"), "env = { K = 'secret' }\n");
      await Deno.writeTextFile(join(version, "main.py"), "");
      await Deno.writeTextFile(join(p.deployments, "api", "metadata.json"), "{}", { mode: 0o644 });

      await openTo(NOBODY, { paths: p, version, envs: [env] });
      const modes = Object.fromEntries(
        [
          p.home,
          p.deployments,
          join(p.deployments, "api"),
          version,
          join(version, "prisn.toml"),
          join(p.deployments, "api", "metadata.json"),
          join(p.deployments, "other"),
          other,
          p.envs,
          env,
          join(p.envs, ".locks"),
          p.db,
          join(p.home, "tokens.json"),
          p.logs,
          p.state,
        ].map((f) => [f.slice(p.home.length) || "/", mode(f)]),
      );
      assert.deepEqual(modes, {
        "/": "0711",
        "/deployments": "0711",
        "/deployments/api": "0711",
        "/deployments/api/v-1": "0750",
        "/deployments/api/v-1/prisn.toml": "0400",
        "/deployments/api/metadata.json": "0600",
        "/deployments/other": "0700",
        "/deployments/other/v-2": "0755", // unreachable: its parent is closed
        "/envs": "0711",
        "/envs/python3-0123456789ab": "0755",
        "/envs/.locks": "0700",
        "/prisn.db": "0600",
        "/tokens.json": "0600",
        "/logs": "0700",
        "/state": "0700",
      });
      assert.equal(Deno.statSync(version).gid, 65534);
      assert.equal(Deno.statSync(version).uid, 0, "root keeps owning it: no one else changes it");
      // A second call changes nothing, and a deployment without envs keeps envs/ open.
      await openTo(NOBODY, { paths: p, version, envs: [] });
      assert.equal(mode(p.envs), "0711");
      await assert.rejects(
        openTo(NOBODY, { paths: p, version: join(dir, "elsewhere"), envs: [] }),
        /is not under/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "checkHomeReachable() names the folder above PRISN_HOME that keeps the user out",
  ignore: notRoot !== false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "prisn-runas-" }); // 0700, root's
    try {
      const home = join(dir, "home");
      await Deno.mkdir(home);
      await assert.rejects(
        checkHomeReachable(NOBODY, home),
        isPrisnError(
          "INVALID",
          `user "nobody" cannot reach PRISN_HOME ${home}: ${dir} is closed to it (mode 0700): run this agent with a PRISN_HOME under folders others may traverse, e.g. /var/lib/prisn`,
        ),
      );
      await Deno.chmod(dir, 0o711);
      await checkHomeReachable(NOBODY, home);
      await Deno.chmod(dir, 0o750);
      await Deno.chown(dir, null, 65534);
      await checkHomeReachable(NOBODY, home); // through its group
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

if (notRoot) console.log(`run_as_test: skipping the file-mode tests: ${notRoot}`);
