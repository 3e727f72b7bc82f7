/**
 * Runs every benchmark in turn (`./denow task bench`), each in its own process so one's leftovers
 * never skew the next. Figures only: a bench that fails is reported and the rest still run.
 */
const BENCHES = [
  "deploy_bench.ts",
  "ls_bench.ts",
  "remote_bench.ts",
  "proxy_bench.ts",
  "rollout_bench.ts",
  "supervisor_bench.ts",
  "cron_bench.ts",
  "env_bench.ts",
  "scale_bench.ts",
  "soak.ts", // 10 minutes unless PRISN_SOAK_SECONDS says otherwise
];

const only = new Set(Deno.args);
let failed = 0;
for (const bench of BENCHES) {
  if (only.size && !only.has(bench) && !only.has(bench.replace(/_bench\.ts$/, ""))) continue;
  console.log(`\n=== ${bench} ===`);
  const status = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(bench, import.meta.url).pathname],
    stdout: "inherit",
    stderr: "inherit",
  }).spawn().status;
  if (!status.success) {
    failed++;
    console.log(`(${bench} exited with ${status.code})`);
  }
}
console.log(`\n${failed === 0 ? "all benchmarks ran" : `${failed} benchmark(s) did not finish`}`);
