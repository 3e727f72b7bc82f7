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
      // Flat: the second half of the minute mostly holds no more than the first half's peak.
      // Thread pools and connections step up under load and idle threads go after 10 s, so one
      // sample may blip above it; a leak keeps climbing, which lifts the median too.
      const half = Math.floor(warm.length / 2);
      const peak = (values: number[]) => Math.max(...values);
      const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1];
      for (
        const [what, values, blip] of [["threads", threads, 8], ["descriptors", fds, 16]] as const
      ) {
        const before = peak(values.slice(0, half));
        const after = values.slice(half);
        assert.ok(median(after) <= before + blip / 4, `${what} ${values}`);
        assert.ok(peak(after) <= before + blip, `${what} ${values}`);
      }
    } finally {
      await home.close();
    }
  },
});
