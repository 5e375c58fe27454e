import { type Config, loadConfigOrExit } from '../config';
import { dkimTxtRecord, ourDkimKey } from '../mail/dkim-key';

// `npm run dns:records [-- --json]`: what the operator publishes for our forwarding domain before the first forward
// goes out. Gmail checks forwarded copies against these: SPF for their envelope sender (our domain, not the
// original sender's), our DKIM key for the ARC seal and our notification emails, and our MX for their bounces.

interface DnsRecordToPublish {
  type: 'TXT' | 'MX';
  name: string;
  value: string;
  why: string;
}

function recordsFor(config: Config): { domain: string; records: DnsRecordToPublish[]; notes: string[] } {
  const { domain } = config.outbound.returnPath;
  const { addresses, names } = config.outbound.own;
  const records: DnsRecordToPublish[] = [];
  const notes: string[] = [];
  if (addresses.length > 0) {
    const value = `v=spf1 ${addresses.map((a) => `ip4:${a}`).join(' ')} -all`;
    records.push({
      type: 'TXT',
      name: domain,
      value,
      why: 'SPF: forwarded copies leave from these addresses',
    });
  } else {
    notes.push(
      'No SPF record: we do not know our sending addresses. Set MXF_MX_ADDRESSES, then run this again.',
    );
  }
  if (addresses.length > 0)
    notes.push(
      `Each customer whose people will reply from temporary mailboxes: add include:${domain} to the SPF record of their domains, or receivers may refuse the replies (see README "Temporary mailboxes").`,
    );
  if (config.outbound.relay) {
    notes.push(
      `Mail leaves through MXF_SMTP_RELAY (${config.outbound.relay.host}): add its sending addresses to the SPF record.`,
    );
  }
  const dkim = dkimTxtRecord(ourDkimKey(config));
  records.push({
    type: 'TXT',
    ...dkim,
    why: 'DKIM/ARC: our key, for seals on forwards and signatures on notices',
  });
  records.push({
    type: 'MX',
    name: domain,
    value: `10 ${names[0]}.`,
    why: 'bounces of forwarded copies come back to this domain: its MX must point at us',
  });
  return { domain, records, notes };
}

/** Zone-file syntax; TXT values longer than one DNS string (255 bytes) are split into several. */
function zoneLine(record: DnsRecordToPublish): string {
  if (record.type !== 'TXT') return `${record.name}.\tIN MX\t${record.value}`;
  const strings = record.value.match(/.{1,255}/g) ?? [''];
  const quoted = strings.map((s) => `"${s}"`);
  return `${record.name}.\tIN TXT\t${quoted.length === 1 ? quoted[0] : `( ${quoted.join('\n\t\t')} )`}`;
}

function main(): void {
  const config = loadConfigOrExit();
  const out = recordsFor(config);
  if (process.argv.includes('--json')) {
    console.log(JSON.stringify(out, null, 2));
    return;
  }
  const lines = [`; DNS records for ${out.domain}, our forwarding domain`];
  for (const record of out.records) lines.push(`; ${record.why}`, zoneLine(record));
  for (const note of out.notes) lines.push(`; NOTE: ${note}`);
  lines.push("; A DNS provider's web form usually takes a long TXT value whole and splits it itself.");
  console.log(lines.join('\n'));
}

main();
