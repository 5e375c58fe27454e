import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { countHeldMessages } from '../src/store/held';
import { createObjectStore } from '../src/store/objects';
import { postfixAvailable } from './postfix';
import { seedHeld } from './seed';
import {
  type BenchStack,
  countFiles,
  domainOf,
  pssMiB,
  smtpSource,
  startBenchStack,
  withPeakMemory,
} from './stack';

// `npm run bench` (full) or `npm run bench -- --quick`: three measurements on this machine, in one run, each
// printed as a Markdown table and drawn as an SVG chart under bench/results/:
//   1. ingest: smtp-source at 1, 20 and 50 sessions reusing their connections, and at 20 and 50 sessions with one
//      new connection per message, 4 KB and 100 KB, against our ingest (on every core) and a Postfix backup MX;
//   2. release: a held backlog forwarded to smtp-sink, against Postfix draining the same backlog to smtp-sink;
//   3. scale: with a growing backlog seeded straight into storage, the time to list and page it, to start a
//      release, and the memory of every process.

const QUICK = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
const RESULTS = join(__dirname, 'results');
/** How this run was started, for the results to say: the measurements chosen, --quick, and the samples if set. */
const COMMAND = (() => {
  const args = process.argv
    .slice(2)
    .filter((a) => ['ingest', 'scoring', 'release', 'scale', '--quick'].includes(a));
  if (QUICK && !args.includes('--quick')) args.push('--quick');
  const samples = process.env.BENCH_SAMPLES ? `BENCH_SAMPLES=${process.env.BENCH_SAMPLES} ` : '';
  return `${samples}npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}`;
})();
/** Samples of each measurement, ours and Postfix alternating; the tables show the median. */
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 2);
const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const f0 = (x: number) => x.toFixed(0);
const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);

function markdown(head: string[], rows: (string | number)[][]): string {
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

async function publish(name: string, title: string, notes: string[], table: string, spec: object) {
  const { toSvg } = await import('./chart.mjs');
  mkdirSync(RESULTS, { recursive: true });
  const text = `## ${title}\n\n${table}\n\n${notes.map((n) => `- ${n}`).join('\n')}\n- Reproduce: \`${COMMAND}\` (${new Date().toISOString().slice(0, 10)}, this machine: ${machine()}).\n`;
  writeFileSync(join(RESULTS, `${name}.md`), text);
  writeFileSync(
    join(RESULTS, `${name}.svg`),
    await toSvg({ width: 520, height: 260, title, ...spec } as never),
  );
  console.log(`\n${text}\nchart: bench/results/${name}.svg`);
}

function machine(): string {
  const cpus = execFileSync('nproc').toString().trim();
  const memGiB = Math.round(
    Number(/MemTotal:\s+(\d+)/.exec(execFileSync('cat', ['/proc/meminfo']).toString())![1]) / 1048576,
  );
  return `${cpus} cores, ${memGiB} GiB`;
}

// ---- 1. ingest ----------------------------------------------------------------------------------------------

async function histogram(port: number): Promise<[number, number][]> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return [...text.matchAll(/^mxf_smtp_time_to_250_seconds_bucket\{le="([^"]+)"\} (\d+)$/gm)]
    .filter((m) => m[1] !== '+Inf')
    .map((m) => [Number(m[1]), Number(m[2])] as [number, number]);
}

/** Quantile from cumulative buckets, interpolated as Prometheus's histogram_quantile() does. */
function quantile(buckets: [number, number][], q: number): number {
  const rank = q * buckets[buckets.length - 1]![1];
  let [prevLe, prevCount] = [0, 0];
  for (const [le, count] of buckets) {
    if (count >= rank) return prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(count - prevCount, 1);
    [prevLe, prevCount] = [le, count];
  }
  return Number.POSITIVE_INFINITY;
}

const unscored = async (stack: BenchStack) =>
  (await stack.sql<{ n: number }[]>`select count(*)::int as n from held_message where scored_at is null`)[0]!
    .n;

/** Waits until the spam scorer has scored everything held: no sample pays for scoring the one before it. */
async function scorerIdle(stack: BenchStack) {
  while ((await unscored(stack)) > 0) await sleep(250);
}

/** One row of the ingest table: how many sessions, how big the messages, and whether a session sends many. */
interface IngestCell {
  sessions: number;
  size: number;
  /**
   * true: smtp-source -d, one connection carrying message after message (a big sender's queue); false: one new
   * connection per message, what many distinct senders look like.
   */
  reuse: boolean;
}

/**
 * The cells, in the order they run. BENCH_INGEST_CONNECTIONS=reused or =per-message runs only those rows (for
 * iterating on one of them).
 */
function ingestCells(): IngestCell[] {
  const only = process.env.BENCH_INGEST_CONNECTIONS;
  const cells: IngestCell[] = [];
  for (const size of [4096, 102_400]) {
    for (const sessions of [1, 20, 50]) cells.push({ sessions, size, reuse: true });
    for (const sessions of [20, 50]) cells.push({ sessions, size, reuse: false });
  }
  return cells.filter((c) => !only || (only === 'reused') === c.reuse);
}

async function benchIngest(stack: BenchStack) {
  const to = `rcpt@${domainOf('ingest')}`;
  // Warm-up (JIT, pools) of each, in both ways of connecting.
  for (const port of [stack.smtpPort, stack.single.smtpPort, stack.postfixPort])
    for (const reuse of [true, false])
      await smtpSource(port, { messages: 300, sessions: 10, size: 4096, to, reuse });
  const rows: (string | number)[][] = [];
  const chart: { cell: string; system: string; rate: number }[] = [];
  for (const cell of ingestCells()) {
    const row = await ingestRow(stack, cell, to);
    rows.push(row.cells);
    chart.push(
      { cell: row.name, system: `ours, ${stack.ingestProcesses} processes`, rate: row.ours },
      { cell: row.name, system: 'ours, 1 process', rate: row.single },
      { cell: row.name, system: 'Postfix', rate: row.postfix },
    );
    console.log(
      `ingest ${row.name}: ours ${f0(row.ours)} msg/s (1 process: ${f0(row.single)}), Postfix ${f0(row.postfix)} msg/s`,
    );
  }
  await publish(
    'ingest',
    'Ingest: messages accepted per second',
    [
      `sessions x message size; Postfix smtp-source, its connections reused (-d) or one new connection per message (no -d); ours, ours on one process and Postfix take turns in the same run, ${SAMPLES} samples each, median shown.`,
      "Our spam scorer (worker and rspamd) scores what ours accepts on the same cores while the sample runs, and each sample starts once it has scored everything before: no sample pays for the one before it (Postfix's samples used to pay for our scorer catching up).",
      `Ours is one ingest node on every core: MXF_INGEST_PROCESSES=${stack.ingestProcesses} processes sharing the port (node:cluster, round robin). "1 process" is a second ingest node with MXF_INGEST_PROCESSES=1 on the same storage, idle while the other is measured; in brackets its ratio to Postfix.`,
      'Every connection comes from 127.0.0.1, standing for many senders: Postfix exempts its own networks from its per-client limits, and the bench lifts ours (MXF_SMTP_MAX_PER_IP) likewise.',
      'Logging is not equal: ours runs at warn (no line per message); Postfix writes its usual info lines per message to its maillog file.',
      'Ours: body in MinIO and rows committed in PostgreSQL (fsync on) before the 250. Postfix: queue file fsynced before the 250.',
      'Time to 250 is measured from the start of DATA by our ingest histogram (mxf_smtp_time_to_250_seconds, summed over the processes), of the node on every core.',
      'Peak memory is PSS sampled every 250 ms, summed over each process tree (the ingest includes its processes, PostgreSQL its backends), while the node on every core is measured.',
    ],
    markdown(
      [
        'sessions x size',
        'connections',
        'messages',
        'ours msg/s',
        'Postfix msg/s',
        'ours/Postfix',
        'ours, 1 process msg/s (/Postfix)',
        'our p50 to 250 (ms)',
        'our p99 to 250 (ms)',
        'peak MiB: ingest / postgres / minio',
      ],
      rows,
    ),
    {
      data: { values: chart },
      mark: 'bar',
      encoding: {
        x: { field: 'cell', type: 'nominal', title: 'sessions x size (connections)', sort: null },
        xOffset: { field: 'system' },
        y: { field: 'rate', type: 'quantitative', title: 'messages/s' },
        color: { field: 'system' },
      },
    },
  );
}

/**
 * One cell: our node (all its processes), our one-process node and Postfix in turn; our held rows counted, our time
 * to 250 (the measured node's histogram) and peak memory over the cell.
 */
async function ingestRow(stack: BenchStack, { sessions, size, reuse }: IngestCell, to: string) {
  const held = async () =>
    (await stack.sql<{ n: number }[]>`select count(*)::int as n from held_message`)[0]!.n;
  const messages = (size > 10_000 ? 1 : 3) * (QUICK ? 150 : 1000) * (sessions === 1 ? 0.5 : 1);
  const before = await histogram(stack.metricsPort);
  const peakMiB: Record<string, number> = {};
  const oursAt = (port: number, ingest: BenchStack['procs']['ingest']) => async () => {
    await scorerIdle(stack);
    const heldBefore = await held();
    const procs = { ingest, postgres: stack.procs.postgres, minio: stack.procs.minio };
    const sample = await withPeakMemory(procs, () =>
      smtpSource(port, { messages, sessions, size, to, reuse }),
    );
    if (ingest === stack.procs.ingest)
      for (const [name, mib] of Object.entries(sample.peakMiB))
        peakMiB[name] = Math.max(peakMiB[name] ?? 0, mib);
    const stored = (await held()) - heldBefore;
    if (stored !== messages) throw new Error(`ours held ${stored} of ${messages}`);
    return messages / sample.result;
  };
  const rates = await inTurn({
    ours: oursAt(stack.smtpPort, stack.procs.ingest),
    single: oursAt(stack.single.smtpPort, stack.single.proc),
    postfix: async () => {
      await scorerIdle(stack);
      return messages / (await smtpSource(stack.postfixPort, { messages, sessions, size, to, reuse }));
    },
  });
  const after = await histogram(stack.metricsPort);
  const delta = after.map(([le, n], i) => [le, n - before[i]![1]] as [number, number]);
  const name = `${sessions} x ${size / 1024} KB${reuse ? '' : ' (1/msg)'}`;
  return {
    name,
    ...rates,
    cells: [
      `${sessions} x ${size / 1024} KB`,
      reuse ? 'reused' : 'one per message',
      messages,
      f0(rates.ours),
      f0(rates.postfix),
      f2(rates.ours / rates.postfix),
      `${f0(rates.single)} (${f2(rates.single / rates.postfix)})`,
      f1(quantile(delta, 0.5) * 1000),
      f1(quantile(delta, 0.99) * 1000),
      `${f0(peakMiB.ingest!)} / ${f0(peakMiB.postgres!)} / ${f0(peakMiB.minio!)}`,
    ],
  };
}

// ---- 1b. scoring ----------------------------------------------------------------------------------------------

/**
 * Does scoring keep up with ingest at 50 sessions? Mail arrives as in the ingest measurement while the worker's
 * scorer scores it through rspamd on the same two cores; the scoring rate is what it scored over the same window,
 * and the backlog it had when the last message was accepted says how far behind it fell.
 */
async function benchScoring(stack: BenchStack) {
  const messages = QUICK ? 600 : 3000;
  while ((await unscored(stack)) > 0) await sleep(250);
  const started = performance.now();
  await smtpSource(stack.smtpPort, { messages, sessions: 50, size: 4096, to: `rcpt@${domainOf('ingest')}` });
  const ingested = performance.now();
  const behind = await unscored(stack);
  while ((await unscored(stack)) > 0) await sleep(100);
  const done = performance.now();
  const ingestRate = messages / ((ingested - started) / 1000);
  const scoreRate = messages / ((done - started) / 1000);
  const row = [
    '50 x 4 KB',
    messages,
    f0(ingestRate),
    f0(scoreRate),
    f2(scoreRate / ingestRate),
    behind,
    f1((done - ingested) / 1000),
  ];
  console.log(
    `scoring: ingest ${f0(ingestRate)} msg/s, scored ${f0(scoreRate)} msg/s, ${behind} behind at the end`,
  );
  await publish(
    'scoring',
    'Spam scoring beside ingest at 50 sessions',
    [
      'smtp-source, 50 sessions, 4 KB, into our ingest while the worker scores every held message through the private rspamd (2 normal workers), all on the same 2 cores.',
      'Scored msg/s counts from the first message sent until the last one is scored; "behind" is how many were unscored when the last was accepted.',
    ],
    markdown(
      [
        'sessions x size',
        'messages',
        'ingest msg/s',
        'scored msg/s',
        'scored/ingest',
        'behind at end',
        'caught up after (s)',
      ],
      [row],
    ),
    {
      data: {
        values: [
          { what: 'ingest', rate: ingestRate },
          { what: 'scored', rate: scoreRate },
        ],
      },
      mark: 'bar',
      encoding: {
        x: { field: 'what', type: 'nominal', title: null },
        y: { field: 'rate', type: 'quantitative', title: 'messages/s' },
      },
    },
  );
}

// ---- 2. release ---------------------------------------------------------------------------------------------

const delivered = async (stack: BenchStack, customer: string) =>
  (
    await stack.sql<{ n: number }[]>`
      select count(*)::int as n from delivery_ledger d join held_recipient r
        on r.message_id = d.message_id and r.recipient = d.recipient
      where r.customer_id = ${customer} and d.outcome = 'delivered'`
  )[0]!.n;

async function instruct(stack: BenchStack, customer: string, body: object) {
  // "resolve" is refused until the outage has recounted what is held: retry for a moment.
  for (let attempt = 0; ; attempt++) {
    try {
      return await stack.api('POST', `/api/outages/${customer}/instructions`, body);
    } catch (err) {
      if (attempt > 20 || !/409/.test((err as Error).message)) throw err;
      await sleep(500);
    }
  }
}

/** Held mail of a customer, by the one definition the outage counts with. */
const heldFor = async (stack: BenchStack, customer: string) => countHeldMessages(stack.sql, customer);

/**
 * Ours: the backlog arrives over SMTP exactly as Postfix's does (smtp-source, 20 sessions, 4 KB), so its bodies
 * sit in the segments real group commit makes at that session count; then the outage is declared and told to
 * forward, timed until the delivery ledger holds every message.
 */
async function releaseOurs(stack: BenchStack, n: number): Promise<number> {
  const held = await heldFor(stack, 'release');
  await smtpSource(stack.smtpPort, {
    messages: n,
    sessions: 20,
    size: 4096,
    to: `rcpt@${domainOf('release')}`,
  });
  while ((await heldFor(stack, 'release')) - held < n) await sleep(250);
  // A forward takes only scored mail: scoring is measured on its own (benchScoring), so the release starts once
  // the filter has scored the backlog.
  while ((await unscored(stack)) > 0) await sleep(250);
  const before = await delivered(stack, 'release');
  await stack.api('POST', '/api/customers/release/outages', {});
  const started = performance.now();
  // The sink is no Gmail: the forward says it takes any pace (per mailbox, else Gmail's 60/min).
  await instruct(stack, 'release', {
    action: 'forward',
    to: ['backlog@gmail.bench.example'],
    rate: '100000/s',
  });
  while ((await delivered(stack, 'release')) - before < n) await sleep(250);
  const seconds = (performance.now() - started) / 1000;
  await instruct(stack, 'release', { action: 'resolve' });
  return n / seconds;
}

/**
 * Postfix: its queue emptied first (the ingest measurement leaves messages deferred there), then the same backlog
 * accepted and deferred, then relayed to the same smtp-sink (postqueue -f), timed until the queue is empty; the
 * rate divides what was actually queued.
 */
async function releasePostfix(stack: BenchStack, n: number): Promise<number> {
  const q = (name: string) => countFiles(join(stack.postfixQueue, name));
  const postconf = (...settings: string[]) =>
    execFileSync('/usr/sbin/postconf', ['-c', stack.postfixConf, '-e', ...settings]);
  const postfix = (...args: string[]) =>
    execFileSync('/usr/sbin/postfix', ['-c', stack.postfixConf, ...args], { stdio: 'ignore' });
  execFileSync('/usr/sbin/postsuper', ['-c', stack.postfixConf, '-d', 'ALL'], { stdio: 'ignore' });
  await smtpSource(stack.postfixPort, {
    messages: n,
    sessions: 20,
    size: 4096,
    to: `rcpt@${domainOf('release')}`,
  });
  while (q('incoming') + q('active') > 0) await sleep(500);
  const queued = q('deferred');
  if (queued < n * 0.99 || queued > n) throw new Error(`Postfix queued ${queued} of ${n}`);
  postconf('defer_transports =', `relay_transport = relay:[127.0.0.1]:${stack.sinkPort}`);
  postfix('reload');
  const started = performance.now();
  execFileSync('/usr/sbin/postqueue', ['-c', stack.postfixConf, '-f']);
  while (q('deferred') + q('active') + q('incoming') > 0) await sleep(250);
  const seconds = (performance.now() - started) / 1000;
  postconf('defer_transports = smtp relay', 'relay_transport = relay');
  postfix('reload');
  return queued / seconds;
}

/** Each system in turn, SAMPLES times each, so none always runs on a warmer or a more loaded machine. */
async function inTurn<K extends string>(systems: Record<K, () => Promise<number>>) {
  const names = Object.keys(systems) as K[];
  const samples = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<K, number[]>;
  for (let i = 0; i < SAMPLES; i++) for (const name of names) samples[name].push(await systems[name]());
  const medians = Object.fromEntries(names.map((n) => [n, median(samples[n])])) as Record<K, number>;
  return { ...medians, samples };
}

/** Ours and Postfix in turn, SAMPLES times each. */
const alternate = (ours: () => Promise<number>, postfix: () => Promise<number>) => inTurn({ ours, postfix });

async function benchRelease(stack: BenchStack) {
  const rows: (string | number)[][] = [];
  const chart: { backlog: string; system: string; rate: number }[] = [];
  for (const n of QUICK ? [2_000, 10_000] : [10_000, 100_000]) {
    const { ours, postfix, samples } = await alternate(
      () => releaseOurs(stack, n),
      () => releasePostfix(stack, n),
    );
    const spread = (xs: number[]) => xs.map(f0).join(', ');
    rows.push([
      n.toLocaleString('en'),
      f0(ours),
      f0(postfix),
      f2(ours / postfix),
      `${spread(samples.ours)} / ${spread(samples.postfix)}`,
    ]);
    chart.push(
      { backlog: n.toLocaleString('en'), system: 'ours', rate: ours },
      { backlog: n.toLocaleString('en'), system: 'Postfix', rate: postfix },
    );
    console.log(`release ${n}: ours ${f0(ours)} msg/s, Postfix ${f0(postfix)} msg/s (medians of ${SAMPLES})`);
  }
  await publish(
    'release',
    'Release: a held backlog delivered, messages per second',
    [
      `Median of ${SAMPLES} samples each, ours and Postfix alternating; every sample is listed (ours / Postfix).`,
      'Both backlogs arrive over SMTP from smtp-source (20 sessions, 4 KB), so our bodies lie in the segments real group commit makes; ours is timed from the forward instruction until the delivery ledger holds every message.',
      "Postfix's queue is emptied before each sample; then the backlog is accepted and deferred, and relayed to the same smtp-sink (postqueue -f), timed until the queue is empty; its rate divides what it had queued.",
      'Both deliver to Postfix smtp-sink on this machine. Ours: one SMTP session reusing its connection, batches of 500 (one duplicate at most per crash); Postfix: up to 20 parallel sessions per destination.',
      'Logging is not equal: ours runs at warn (no line per message); Postfix writes its usual info lines per message to its maillog file, which it cannot turn off.',
    ],
    markdown(
      ['backlog', 'ours msg/s', 'Postfix msg/s', 'ours/Postfix', 'samples msg/s (ours / Postfix)'],
      rows,
    ),
    {
      data: { values: chart },
      mark: 'bar',
      encoding: {
        x: { field: 'backlog', type: 'nominal', sort: null, title: 'held messages' },
        xOffset: { field: 'system' },
        y: { field: 'rate', type: 'quantitative', title: 'messages/s' },
        color: { field: 'system' },
      },
    },
  );
}

// ---- 3. scale -----------------------------------------------------------------------------------------------

async function timed(fn: () => Promise<unknown>, times = 5): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < times; i++) {
    const started = performance.now();
    await fn();
    samples.push(performance.now() - started);
  }
  return median(samples);
}

async function benchScale(stack: BenchStack) {
  const objects = createObjectStore(stack.config);
  await stack.api('POST', '/api/customers/scale/outages', {});
  const rows: (string | number)[][] = [];
  const chart: { backlog: number; operation: string; ms: number }[] = [];
  let seeded = 0;
  for (const level of QUICK ? [0, 10_000, 100_000] : [0, 100_000, 1_000_000]) {
    const seedStarted = performance.now();
    await seedHeld(stack.sql, objects, stack.config.s3.bucket, 'scale', level - seeded);
    console.log(`scale: seeded ${level - seeded} in ${f1((performance.now() - seedStarted) / 1000)} s`);
    seeded = level;
    const [middle] = await stack.sql<{ id: string }[]>`
      select message_id::text as id from held_recipient where customer_id = 'scale'
      order by message_id desc offset ${Math.floor(level / 2)} limit 1`;
    const firstPage = await timed(() => stack.api('GET', '/api/outages/scale/messages?limit=50'));
    const deepPage = middle
      ? await timed(() => stack.api('GET', `/api/outages/scale/messages?limit=50&cursor=${middle.id}`))
      : firstPage;
    const customers = await timed(() => stack.api('GET', '/api/customers'), 3);
    const before = await delivered(stack, 'scale');
    const started = performance.now();
    let releaseStart = 0;
    if (level > 0) {
      await instruct(stack, 'scale', {
        action: 'forward',
        to: ['scale@gmail.bench.example'],
        rate: '100000/s',
      });
      while ((await delivered(stack, 'scale')) === before) await sleep(20);
      releaseStart = performance.now() - started;
      await instruct(stack, 'scale', { action: 'hold' });
    }
    const memory = Object.fromEntries(
      Object.entries(stack.procs).map(([name, p]) => [name, pssMiB(p.child.pid!)]),
    );
    rows.push([
      level.toLocaleString('en'),
      f1(firstPage),
      f1(deepPage),
      f1(customers),
      level > 0 ? f0(releaseStart) : '-',
      Object.entries(memory)
        .map(([n, m]) => `${n} ${f0(m)}`)
        .join(', '),
    ]);
    chart.push(
      { backlog: level, operation: 'list first page', ms: firstPage },
      { backlog: level, operation: 'list a middle page', ms: deepPage },
      { backlog: level, operation: 'customers overview', ms: customers },
      ...(level > 0
        ? [{ backlog: level, operation: 'start a release (first delivery)', ms: releaseStart }]
        : []),
    );
    console.log(
      `scale ${level}: first page ${f1(firstPage)} ms, middle page ${f1(deepPage)} ms, release start ${f0(releaseStart)} ms`,
    );
  }
  await publish(
    'scale',
    'Scale: operations against a growing backlog (ms)',
    [
      'Backlog seeded straight into PostgreSQL and MinIO (4 KB bodies in 1,000-message segments), not over SMTP.',
      'List: GET /api/outages/scale/messages?limit=50 through the ops API, median of 5; a middle page uses the keyset cursor.',
      "Customers overview: GET /api/customers, which counts every customer's held mail (median of 3).",
      'Start a release: from the forward instruction to the first delivery-ledger row; then the outage is told to hold again.',
      'Memory: PSS in MiB of each process tree after the step.',
    ],
    markdown(
      [
        'held messages',
        'first page (ms)',
        'middle page (ms)',
        'customers overview (ms)',
        'start a release (ms)',
        'memory (MiB)',
      ],
      rows,
    ),
    {
      data: { values: chart },
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'backlog', type: 'ordinal', title: 'held messages' },
        y: { field: 'ms', type: 'quantitative', title: 'ms', scale: { type: 'symlog' } },
        color: { field: 'operation' },
      },
    },
  );
}

async function main() {
  const missing = postfixAvailable();
  if (missing) throw new Error(missing);
  const only = process.argv.filter((a) => ['ingest', 'scoring', 'release', 'scale'].includes(a));
  const stack = await startBenchStack();
  // Stopped by a signal (Ctrl-C, `kill`, a closed terminal): the private stack and Postfix go with it.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
    process.once(signal, () => void stack.stop().then(() => process.exit(130)));
  try {
    console.log(`bench: ${QUICK ? 'quick' : 'full'} run on ${machine()}`);
    if (!only.length || only.includes('ingest')) await benchIngest(stack);
    if (!only.length || only.includes('scoring')) await benchScoring(stack);
    if (!only.length || only.includes('release')) await benchRelease(stack);
    if (!only.length || only.includes('scale')) await benchScale(stack);
  } finally {
    await stack.stop();
  }
}

main().catch((err) => {
  console.error(`bench: ${(err as Error).stack ?? err}`);
  process.exit(1);
});
