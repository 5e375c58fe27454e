import sanitizeHtml from 'sanitize-html';

// HTML mail is written by strangers and shown on our origin, inside the signed-in page. What survives: the tags
// that lay out text and tables, links (opened in a new tab, telling nobody where they came from), and images
// that are parts of the message itself (cid:, served by us). Dropped: scripts, forms, frames, <style> blocks
// (they would restyle our page), and every style property that could move a message over our own buttons.
//
// A remote image is a read receipt for its sender (and tells them where the reader is): its address is dropped
// unless the reader asked for this message's images. The CSP blocks them too; this keeps the browser from even
// trying, and tells us whether to offer the button.

const EXTRA_TAGS = ['img', 'font', 'center', 'span', 'u', 's', 'del', 'ins', 'big', 'small', 'sub', 'sup'];
const LAYOUT_ATTRIBUTES = [
  'style',
  'align',
  'valign',
  'width',
  'height',
  'bgcolor',
  'color',
  'dir',
  'title',
  'colspan',
  'rowspan',
  'cellpadding',
  'cellspacing',
  'border',
];

// No colon, slash or backslash: no url(), no expression(), nothing that fetches.
const SAFE_VALUE = [/^[-#%,.\w\s"'()!]*$/];
const STYLE_PROPERTIES = [
  'color',
  'background-color',
  'font',
  'font-family',
  'font-size',
  'font-style',
  'font-weight',
  'text-align',
  'text-decoration',
  'text-transform',
  'line-height',
  'letter-spacing',
  'vertical-align',
  'white-space',
  'width',
  'max-width',
  'min-width',
  'height',
  'margin',
  'margin-top',
  'margin-right',
  'margin-bottom',
  'margin-left',
  'padding',
  'padding-top',
  'padding-right',
  'padding-bottom',
  'padding-left',
  'border',
  'border-top',
  'border-right',
  'border-bottom',
  'border-left',
  'border-color',
  'border-style',
  'border-width',
  'border-collapse',
  'border-radius',
  'border-spacing',
  'table-layout',
  'direction',
  'float',
  'clear',
];
const ALLOWED_STYLES = Object.fromEntries(STYLE_PROPERTIES.map((p) => [p, SAFE_VALUE]));
ALLOWED_STYLES.display = [/^(none|block|inline|inline-block|table|table-row|table-cell|list-item)$/];

const decodeSafely = (text: string) => {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
};

export interface SanitizedHtml {
  html: string;
  /** Remote images whose address was dropped: the reader may ask to load them. */
  blockedImages: number;
}

export interface SanitizeOptions {
  remoteImages: boolean;
  /** Where we serve the message's part with this Content-ID. */
  cidUrl: (cid: string) => string;
}

export function sanitizeMailHtml(input: string, opts: SanitizeOptions): SanitizedHtml {
  let blockedImages = 0;
  const img: sanitizeHtml.Transformer = (tagName, attribs) => {
    const { src = '', ...rest } = attribs;
    if (/^cid:/i.test(src))
      return { tagName, attribs: { ...rest, src: opts.cidUrl(decodeSafely(src.slice(4))) } };
    if (opts.remoteImages && /^(https?:\/\/|data:image\/)/i.test(src))
      return { tagName, attribs: { ...rest, src } };
    if (src) blockedImages++;
    return { tagName, attribs: { ...rest, alt: rest.alt || '[image]' } };
  };
  const html = sanitizeHtml(input, {
    allowedTags: [...sanitizeHtml.defaults.allowedTags, ...EXTRA_TAGS],
    allowedAttributes: {
      '*': LAYOUT_ATTRIBUTES,
      a: ['href', 'name', 'target', 'rel'],
      img: ['src', 'alt', 'width', 'height'],
      font: ['face', 'size', 'color'],
    },
    allowedSchemes: ['http', 'https', 'mailto', 'tel'],
    allowedSchemesByTag: { img: ['http', 'https', 'data'] },
    allowProtocolRelative: false,
    allowedStyles: { '*': ALLOWED_STYLES },
    transformTags: {
      img,
      a: (tagName, attribs) => {
        // A mailto: link writes from this mailbox: a hotel or library browser has no mail app to hand it to.
        const mailto = /^mailto:([^?]*)/i.exec(attribs.href ?? '');
        if (mailto)
          return {
            tagName,
            attribs: { ...attribs, href: `/compose?to=${encodeURIComponent(decodeSafely(mailto[1]!))}` },
          };
        return { tagName, attribs: { ...attribs, target: '_blank', rel: 'noopener noreferrer nofollow' } };
      },
    },
  });
  return { html, blockedImages };
}
