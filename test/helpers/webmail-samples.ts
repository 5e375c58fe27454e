import { randomUUID } from 'node:crypto';
import { composeRaw, pngBanner, type Sample, tinyPdf } from './webmail';

// The mail in the tests' mailbox, and in the committed screenshots: a freight company's office under water, the
// week its people read their mail in a browser. Delivered oldest first, so the last one is at the top.

const hoursAgo = (h: number) => new Date(Date.now() - h * 3_600_000);
const id = () => `<${randomUUID()}@mail.sender.example>`;

export const FLOOD_MAP_URL = 'https://status.harbourline.example/floodline-map.png';
export const banner = pngBanner(480, 36, [18, 58, 94]);
export const evacuationPdf = tinyPdf('Harbourline Freight - evacuation and re-entry plan, 3rd edition');
export const manifestCsv = Buffer.from(
  'container,seal,contents,weight_kg\r\nMSKU 481220-7,HL-88213,machine parts,18400\r\nMSKU 481231-2,HL-88214,bottled water,21050\r\n',
);

async function sample(
  mail: Parameters<typeof composeRaw>[0] & { subject: string; from: string },
): Promise<Sample> {
  const messageId = id();
  const raw = await composeRaw({ ...mail, messageId });
  return { raw, messageId, subject: mail.subject, from: mail.from };
}

export async function floodedOfficeMail(to: string): Promise<Sample[]> {
  return [
    await sample({
      from: 'Facilities <facilities@harbourline.example>',
      to,
      subject: 'Fire drill moved to Thursday 10:00',
      date: hoursAgo(70),
      text: 'The quarterly fire drill moves to Thursday at 10:00. Assemble at point B, the car park by the gate.\n\nFacilities',
    }),
    await sample({
      from: 'Jonas de Vries <jonas.devries@vandermolen-logistics.example>',
      to,
      cc: 'planning@harbourline.example',
      subject: 'Q3 shipment to Rotterdam: revised ETA and manifest',
      date: hoursAgo(30),
      text: 'Hello,\n\nThe vessel is held at Felixstowe by the storm; the new ETA in Rotterdam is Friday 06:00.\nThe revised manifest is attached. Can you confirm the seal numbers before Thursday noon?\n\nKind regards,\nJonas de Vries\nVandermolen Logistics',
      attachments: [{ filename: 'rotterdam-manifest.csv', content: manifestCsv, contentType: 'text/csv' }],
    }),
    await sample({
      from: 'Priya Raman <p.raman@northgate-mutual.example>',
      to,
      subject: 'Claim HL-2026-0412: photos of the ground floor',
      date: hoursAgo(9),
      text: 'Dear Harbourline team,\n\nTo open claim HL-2026-0412 we need photos of the ground floor, the server room and the loading bay before anything is moved, and the water line on the walls if it is visible.\n\nPriya Raman\nLoss adjuster, Northgate Mutual',
    }),
    await sample({
      from: 'Dave Mills, Facilities <facilities@harbourline.example>',
      to,
      subject: 'Ground floor flooded: office closed until further notice',
      date: hoursAgo(3),
      html: `<img src="cid:banner@harbourline" alt="Harbourline Freight" width="480" height="36">
<h2 style="color:#123a5e">The Quay Street office is closed</h2>
<p>The river came over the flood wall at 04:30. The ground floor, the server room and the loading bay are under
<strong>40&nbsp;cm of water</strong>. Nobody was hurt.</p>
<ul><li>Do <strong>not</strong> come to the office until Facilities says it is safe.</li>
<li>Work from home if you can; the warehouse team meets at the Dock Road depot at 08:00.</li>
<li>Our email runs on temporary mailboxes for now: see the IT notice.</li></ul>
<p>The Environment Agency's flood map: <img src="${FLOOD_MAP_URL}" alt="flood map" width="300"></p>
<p>The evacuation and re-entry plan is attached.</p>
<p style="color:#5b6772">Dave Mills, Facilities Manager, +44 20 7946 0321</p>
<p><a href="https://status.harbourline.example/updates" onclick="track()">Live updates on the flood</a></p>
<script>track('opened')</script>`,
      attachments: [
        { filename: 'banner.png', content: banner, contentType: 'image/png', cid: 'banner@harbourline' },
        {
          filename: 'evacuation-and-reentry-plan.pdf',
          content: evacuationPdf,
          contentType: 'application/pdf',
        },
      ],
    }),
    await sample({
      from: 'IT Service Desk <servicedesk@harbourline.example>',
      to,
      subject: 'Your email is on a temporary mailbox this week',
      date: hoursAgo(1),
      text: [
        'Hello,',
        '',
        'Our mail server was in the server room, which is flooded. Until it is back, your mail goes to a',
        'temporary mailbox with the same address. Nothing is lost: mail that arrived since Monday is in it.',
        '',
        'From your phone: add an IMAP account (the sign-in details are in the SMS we sent you).',
        'From a browser: use the sign-in link in the same SMS.',
        '',
        'What you send from the temporary mailbox is copied back to your normal mailbox afterwards.',
        '',
        'IT Service Desk, ext. 4400',
      ].join('\n'),
    }),
  ];
}
