import assert from "node:assert/strict";
import { BenchHome } from "../../bench/_util.ts";
import { soak } from "../../bench/soak.ts";

Deno.test({
  name:
    "a one-minute soak (crash loop, every-second cronjob, chatty service over the log rate limit, HTTP load, deploy/rollback every 15 s) leaves the agent's threads and descriptors flat and fails no request",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const home = new BenchHome("prisn-soak-test-");
    try {
      const r = await soak(home, {
        seconds: 60,
        sampleSeconds: 5,
        deployEverySeconds: 15,
        chatty: "paced", // the suite shares the machine: no output as fast as a pipe goes
      });
      const warm = r.samples.filter((s) => s.at >= 10);
      const threads = warm.map((s) => s.threads);
      const fds = warm.map((s) => s.fds);
      console.log(
        `soak: rss ${r.samples.map((s) => Math.round(s.rssKiB / 1024)).join(" ")} MiB; ` +
          `threads ${threads.join(" ")}; fds ${fds.join(" ")}; ${r.requests} requests`,
      );
      assert.ok(r.deploys + r.rollbacks >= 2, `${r.deploys} deploys, ${r.rollbacks} rollbacks`);
      assert.ok(r.requests > 100, `${r.requests} requests`);
      assert.equal(r.failedRequests, 0, "no request failed through the deploys and rollbacks");
      assert.ok(r.cronRuns >= 30, `${r.cronRuns} cron runs in a minute`);
      // Flat: the second half of the minute holds no more than the first half's peak (thread
      // pools and connections step up under load, then stay; a leak keeps climbing).
      const half = Math.floor(warm.length / 2);
      const peak = (values: number[]) => Math.max(...values);
      assert.ok(
        peak(threads.slice(half)) <= peak(threads.slice(0, half)) + 1,
        `threads ${threads}`,
      );
      assert.ok(peak(fds.slice(half)) <= peak(fds.slice(0, half)) + 8, `descriptors ${fds}`);
    } finally {
      await home.close();
    }
  },
});
