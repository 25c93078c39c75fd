// Why a deployment failed, in words: the deployer records the step and
// the technical reason; this turns the common causes into what to do.

const rules = [
  [/health/i, /(refused|not healthy|timeout|timed out|no route|reset|EOF|did not answer|unhealthy)/i, (d, port) =>
    `health check failed: the app did not answer on port ${port || 'its configured port'}; it may listen on another port, or take longer to start than the health check waits`],
  [/health/i, /status (\d{3})|answered (\d{3})|HTTP (\d{3})/i, (d, port, m) =>
    `health check failed: the app answered ${m[1] || m[2] || m[3]} on port ${port || 'its port'}; the health check path must answer 2xx`],
  [/pull|image|source/i, /pull (\S+?):? .*(no such host|lookup|dial tcp|connection refused|i\/o timeout|TLS handshake)/i, (d, port, m) =>
    `could not pull the image ${m[1]}: its registry could not be reached (check the image name and that this host reaches the registry)`],
  [/pull|image|source/i, /pull (\S+?):? .*(pull access denied|unauthorized|denied|authentication required)/i, (d, port, m) =>
    `could not pull the image ${m[1]}: the registry refused access (a private image needs registry credentials)`],
  [/pull|image|source/i, /pull (\S+?):? .*(manifest unknown|not found)/i, (d, port, m) =>
    `could not pull the image ${m[1]}: the registry has no such image or tag`],
  [/pull|image|source/i, /(image .*not on this Docker host|pull access denied|manifest unknown|no such image|repository does not exist)/i, () => 'could not get the image: it is not on this Docker host and could not be pulled (check its name and tag)'],
  [/fetch|source|git/i, /could not resolve host|resolve/i, () => 'could not fetch the source: the git host could not be resolved (check the repository URL)'],
  [/fetch|source|git/i, /(authentication|could not read Username|403|401|permission denied)/i, () => 'could not fetch the source: the git host refused access (a private repository needs credentials)'],
  [/fetch|source|git/i, /(couldn't find remote ref|remote branch .* not found|unknown revision|did not match)/i, () => 'could not fetch the source: the branch, tag or commit does not exist in the repository'],
  [/build/i, /./, () => 'the image build failed: the last lines of the build log below say why'],
  [/start|container|run/i, /(non-overlapping IPv4 address pool|create network)/i, () => 'the container could not start: Docker could not create its network on this host (it may have run out of address pools: remove unused Docker networks)'],
  [/start|container|run/i, /(port is already allocated|address already in use)/i, () => 'the container could not start: its port is already taken on this host'],
  [/start|container|run/i, /./, () => 'the container could not start or exited at once: its output below says why'],
  [/timeout/i, /./, () => 'the deployment took longer than its time limit and was stopped'],
];

// explainFailure returns a sentence for a failed deployment d of an app
// whose container port is port, or '' when d did not fail.
export function explainFailure(d, port) {
  if (!d || !['failed', 'dead_lettered', 'interrupted'].includes(d.status)) return '';
  if (d.status === 'interrupted') return 'the deployment was interrupted: berth stopped while it ran';
  if (d.status === 'dead_lettered') return 'the deployment could not be handed to the deployer after several tries';
  const step = d.failed_step || '';
  const reason = d.failure_reason || '';
  for (const [stepRe, reasonRe, say] of rules) {
    const m = reason.match(reasonRe);
    if (stepRe.test(step) && m) return say(d, port, m);
  }
  return `failed at ${step.replace(/_/g, ' ') || 'an unknown step'}`;
}
