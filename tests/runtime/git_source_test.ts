import assert from "node:assert/strict";
import { join } from "node:path";
import { fetchGit, isGitUrl, redactUrl } from "../../runtime/git_source.ts";
import { PrisnError } from "../../core/errors.ts";
import { exists } from "../../core/fs.ts";
import {
  makeTestRepo,
  serveGitHttp,
  startGitDaemon,
  type TestRepo,
} from "../fixtures/git_repos.ts";
import { freePort } from "../_helpers.ts";

async function withRepo(fn: (repo: TestRepo, tmp: string) => Promise<void>) {
  const tmp = await Deno.makeTempDir({ prefix: "prisn-git-test-" });
  try {
    await fn(await makeTestRepo(join(tmp, "served")), tmp);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

/** Asserts fetchGit rejects with `code` (and a message matching `message`), leaving no dest. */
async function assertFails(
  promise: Promise<unknown>,
  dest: string,
  code: string,
  message: RegExp | string,
): Promise<PrisnError> {
  const error = await promise.then(() => undefined, (e) => e);
  assert.ok(error instanceof PrisnError, `expected a PrisnError, got ${error}`);
  assert.equal(error.code, code, error.message);
  if (typeof message === "string") assert.equal(error.message, message);
  else assert.match(error.message, message);
  assert.ok(!error.message.includes("\n"), error.message);
  assert.equal(await exists(dest), false, "dest must be removed");
  return error;
}

Deno.test("isGitUrl() accepts git URL forms and rejects local paths", () => {
  for (
    const url of [
      "https://github.com/org/repo.git",
      "http://127.0.0.1:8080/repo.git",
      "ssh://git@host.example/org/repo.git",
      "git://host.example/repo",
      "file:///srv/git/repo.git",
      "git@github.com:org/repo.git",
      "git@github.com:org/repo",
      "https://user:token@host/x",
    ]
  ) assert.equal(isGitUrl(url), true, url);
  for (
    const path of [
      "./my-project/",
      "my-project",
      "/srv/projects/app",
      "backup.py",
      "../x",
      "C:\\projects\\app",
      "ext::sh -c touch% /tmp/pwned",
      "",
    ]
  ) assert.equal(isGitUrl(path), false, path);
});

Deno.test("redactUrl() hides credentials but keeps ssh user names", () => {
  assert.equal(redactUrl("https://user:token@host/x"), "https://***@host/x");
  assert.equal(
    redactUrl("https://ghp_abc123@github.com/o/r.git"),
    "https://***@github.com/o/r.git",
  );
  assert.equal(redactUrl("http://a:b@c@127.0.0.1:80/r"), "http://***@127.0.0.1:80/r");
  assert.equal(redactUrl("https://host/x"), "https://host/x");
  assert.equal(redactUrl("ssh://git@host/x.git"), "ssh://git@host/x.git");
  assert.equal(redactUrl("ssh://git:pw@host/x.git"), "ssh://***@host/x.git");
  assert.equal(redactUrl("git@github.com:org/repo.git"), "git@github.com:org/repo.git");
  assert.equal(redactUrl("https://host/x?a=b@c"), "https://host/x?a=b@c");
});

Deno.test("fetchGit() checks out the default branch, a branch, tags and commits over file://", async () => {
  await withRepo(async (repo, tmp) => {
    const url = `file://${repo.bare}`;

    const head = await fetchGit(url, { dest: join(tmp, "head") });
    assert.equal(head.dir, join(tmp, "head"));
    assert.deepEqual(head.source, { url, commit: repo.main });
    assert.equal(await Deno.readTextFile(join(head.dir, "README.md")), "v2\n");
    assert.equal(await exists(join(head.dir, ".git")), false);

    const dev = await fetchGit(url, { ref: "dev", dest: join(tmp, "dev") });
    assert.deepEqual(dev.source, { url, ref: "dev", commit: repo.dev });
    assert.equal(await Deno.readTextFile(join(dev.dir, "dev.txt")), "dev\n");

    for (const tag of ["v1", "v1-light"]) {
      const tagged = await fetchGit(url, { ref: tag, dest: join(tmp, tag) });
      assert.equal(tagged.source.commit, repo.first, tag);
      assert.equal(await Deno.readTextFile(join(tagged.dir, "README.md")), "v1\n");
    }

    const sha = await fetchGit(url, { ref: repo.first, dest: join(tmp, "sha") });
    assert.equal(sha.source.commit, repo.first);
    assert.equal(await exists(join(sha.dir, "app.py")), false);

    const short = await fetchGit(url, { ref: repo.dev.slice(0, 9), dest: join(tmp, "short") });
    assert.equal(short.source.commit, repo.dev);

    const full = await fetchGit(url, { ref: "refs/heads/dev", dest: join(tmp, "fullref") });
    assert.equal(full.source.commit, repo.dev);
  });
});

Deno.test("fetchGit() with a path returns that folder of the checkout", async () => {
  await withRepo(async (repo, tmp) => {
    const dest = join(tmp, "tools");
    const got = await fetchGit(`file://${repo.bare}`, { ref: "v1", path: "tools/", dest });
    assert.equal(got.dir, join(dest, "tools"));
    assert.deepEqual(got.source, {
      url: `file://${repo.bare}`,
      ref: "v1",
      path: "tools",
      commit: repo.first,
    });
    assert.equal(await Deno.readTextFile(join(got.dir, "run.sh")), "echo tool\n");
    assert.equal(await exists(join(dest, ".git")), false);
  });
});

Deno.test("fetchGit() falls back to a full fetch when the server refuses a commit id", async () => {
  await withRepo(async (repo, tmp) => {
    // Protocol v0 upload-pack refuses unadvertised objects ("not our ref").
    const environment = {
      ...Deno.env.toObject(),
      GIT_CONFIG_COUNT: "1",
      GIT_CONFIG_KEY_0: "protocol.version",
      GIT_CONFIG_VALUE_0: "0",
    };
    const url = `file://${repo.bare}`;
    const got = await fetchGit(url, { ref: repo.first, dest: join(tmp, "a"), environment });
    assert.equal(got.source.commit, repo.first);
    assert.equal(await Deno.readTextFile(join(got.dir, "README.md")), "v1\n");

    const missing = "0123456789abcdef0123456789abcdef01234567";
    const dest = join(tmp, "b");
    await assertFails(
      fetchGit(url, { ref: missing, dest, environment }),
      dest,
      "NOT_FOUND",
      `ref "${missing}" not found in ${url}`,
    );
  });
});

Deno.test("fetchGit() reports a missing ref, commit or path as NOT_FOUND and removes dest", async () => {
  await withRepo(async (repo, tmp) => {
    const url = `file://${repo.bare}`;
    const dest = join(tmp, "out");
    await assertFails(
      fetchGit(url, { ref: "v9", dest }),
      dest,
      "NOT_FOUND",
      `ref "v9" not found in ${url}`,
    );
    await assertFails(
      fetchGit(url, { ref: "refs/heads/nope", dest }),
      dest,
      "NOT_FOUND",
      `ref "refs/heads/nope" not found in ${url}`,
    );
    const missing = "fedcba9876543210fedcba9876543210fedcba98";
    await assertFails(
      fetchGit(url, { ref: missing, dest }),
      dest,
      "NOT_FOUND",
      /^ref "fedcba98.*" not found/,
    );
    await assertFails(
      fetchGit(url, { ref: "abcdef1", dest }),
      dest,
      "NOT_FOUND",
      `ref "abcdef1" not found in ${url}`,
    );
    await assertFails(
      fetchGit(url, { ref: "v1", path: "app", dest }),
      dest,
      "NOT_FOUND",
      `path "app" not found in ${url} at v1 (${repo.first.slice(0, 12)})`,
    );
    await assertFails(
      fetchGit(url, { path: "README.md", dest }),
      dest,
      "INVALID",
      /is a file, not a folder/,
    );
    await assertFails(
      fetchGit(url, { path: "../served", dest }),
      dest,
      "INVALID",
      /inside the repository/,
    );
    await assertFails(
      fetchGit(url, { ref: "--upload-pack=touch", dest }),
      dest,
      "INVALID",
      /not a valid git ref/,
    );
    await assertFails(
      fetchGit("./local/folder", { dest }),
      dest,
      "INVALID",
      /not a git repository URL/,
    );

    // An existing dest is refused and left alone.
    await Deno.mkdir(dest);
    const error = await fetchGit(url, { dest }).then(() => undefined, (e) => e);
    assert.equal(error?.code, "INVALID");
    assert.equal(await exists(dest), true);
  });
});

Deno.test("fetchGit() works over git:// from a loopback git daemon", async () => {
  await withRepo(async (repo, tmp) => {
    const daemon = await startGitDaemon(repo.root);
    try {
      const url = `${daemon.url}/repo.git`;
      const head = await fetchGit(url, { dest: join(tmp, "head") });
      assert.equal(head.source.commit, repo.main);
      const tag = await fetchGit(url, { ref: "v1", path: "tools", dest: join(tmp, "tag") });
      assert.equal(tag.source.commit, repo.first);
      assert.equal(await Deno.readTextFile(join(tag.dir, "run.sh")), "echo tool\n");
      const sha = await fetchGit(url, { ref: repo.dev, dest: join(tmp, "sha") });
      assert.equal(await Deno.readTextFile(join(sha.dir, "dev.txt")), "dev\n");
      const dest = join(tmp, "missing");
      await assertFails(
        fetchGit(url, { ref: "v9", dest }),
        dest,
        "NOT_FOUND",
        `ref "v9" not found in ${url}`,
      );
      await assertFails(
        fetchGit(`${daemon.url}/nope.git`, { dest }),
        dest,
        "UNAVAILABLE",
        /^cannot reach git repository git:\/\/127\.0\.0\.1:\d+\/nope\.git: /,
      );
    } finally {
      await daemon.close();
    }
  });
});

Deno.test("fetchGit() over http keeps credentials out of results and errors", async () => {
  await withRepo(async (repo, tmp) => {
    const server = serveGitHttp(repo.root, { auth: { user: "alice", password: "s3cret-token" } });
    try {
      const host = `127.0.0.1:${server.port}`;
      const url = `http://alice:s3cret-token@${host}/repo.git`;
      const got = await fetchGit(url, { ref: "dev", dest: join(tmp, "ok") });
      assert.deepEqual(got.source, {
        url: `http://***@${host}/repo.git`,
        ref: "dev",
        commit: repo.dev,
      });
      assert.equal(await exists(join(tmp, "ok", ".git")), false); // .git/config held the token

      const dest = join(tmp, "fail");
      const missing = await assertFails(
        fetchGit(url, { ref: "v9", path: "tools", dest }),
        dest,
        "NOT_FOUND",
        `ref "v9" not found in http://***@${host}/repo.git`,
      );
      const missingPath = await assertFails(
        fetchGit(url, { path: "nope", dest }),
        dest,
        "NOT_FOUND",
        `path "nope" not found in http://***@${host}/repo.git at HEAD (${repo.main.slice(0, 12)})`,
      );
      // Wrong password and no credentials: refused at once, no prompt.
      const started = Date.now();
      const wrong = await assertFails(
        fetchGit(`http://alice:wrong-s3cret@${host}/repo.git`, { dest }),
        dest,
        "UNAVAILABLE",
        new RegExp(`^cannot reach git repository http://\\*\\*\\*@${host}/repo\\.git: `),
      );
      await assertFails(
        fetchGit(`http://${host}/repo.git`, { dest }),
        dest,
        "UNAVAILABLE",
        /terminal prompts disabled|Authentication failed/,
      );
      assert.ok(Date.now() - started < 20_000);
      for (const error of [missing, missingPath, wrong]) {
        assert.ok(!/s3cret/.test(error.message), error.message);
        assert.ok(!/s3cret/.test(String(error.stack)), error.stack);
      }
    } finally {
      await server.close();
    }
  });
});

Deno.test("fetchGit() reports an unreachable repository as UNAVAILABLE without credentials", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "prisn-git-test-" });
  try {
    const dest = join(tmp, "out");
    const port = freePort();
    const error = await assertFails(
      fetchGit(`http://bob:hunter2@127.0.0.1:${port}/x.git`, { dest }),
      dest,
      "UNAVAILABLE",
      new RegExp(
        `^cannot reach git repository http://\\*\\*\\*@127\\.0\\.0\\.1:${port}/x\\.git: .*connect`,
        "i",
      ),
    );
    assert.ok(!error.message.includes("hunter2"));
    await assertFails(
      fetchGit(`git://127.0.0.1:${port}/x.git`, { ref: "main", dest }),
      dest,
      "UNAVAILABLE",
      new RegExp(
        `^cannot reach git repository git://127\\.0\\.0\\.1:${port}/x\\.git: .*refused`,
        "i",
      ),
    );
    await assertFails(
      fetchGit(`https://tok@127.0.0.1:${port}/x.git`, {
        ref: "0123456789abcdef0123456789abcdef01234567",
        dest,
      }),
      dest,
      "UNAVAILABLE",
      /^cannot reach git repository https:\/\/\*\*\*@127\.0\.0\.1:\d+\/x\.git: /,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("fetchGit() gives up after timeoutMs on a server that never answers", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "prisn-git-test-" });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) held.push(conn);
    } catch {
      // listener closed
    }
  })();
  try {
    const port = (listener.addr as Deno.NetAddr).port;
    const dest = join(tmp, "out");
    const started = Date.now();
    await assertFails(
      fetchGit(`http://127.0.0.1:${port}/slow.git`, { dest, timeoutMs: 1_500 }),
      dest,
      "UNAVAILABLE",
      `cannot reach git repository http://127.0.0.1:${port}/slow.git: timed out`,
    );
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
  } finally {
    listener.close();
    for (const conn of held) conn.close();
    await accepting;
    await Deno.remove(tmp, { recursive: true });
  }
});
