// DOM rendering of messages: stored ones from GET /v1/conversations/{id}, and the assistant's reply while it
// streams (text as it arrives, one image slot per tool call: progress, previews replaced in place, the final
// image from its attachment URL, or the failure).

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const c of children) node.append(c);
  return node;
}

function size(bytes) {
  if (!Number.isFinite(bytes)) return '';
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.ceil(bytes / 1e3)} kB`;
}

/** One image of a message, identified by its tool call. */
class ImageSlot {
  constructor(container) {
    this.img = null;
    this.isFinal = false;
    this.caption = el('figcaption');
    this.figure = el('figure', {}, [this.caption]);
    container.append(this.figure);
  }

  setImage(img) {
    if (this.img) this.img.replaceWith(img);
    else this.figure.prepend(img);
    this.img = img;
  }

  status(text) {
    if (!this.isFinal) this.caption.textContent = text;
  }

  preview(src, index) {
    if (this.isFinal) return;
    if (this.img) {
      this.img.src = src; // replaced in place: same element, next preview
    } else {
      this.setImage(el('img', { className: 'preview', src, alt: 'Preview of the image being generated' }));
    }
    this.status(`preview ${index + 1}…`);
  }

  /** The stored image: loads from its URL at once and takes the preview's place when it has loaded. */
  final(a) {
    this.isFinal = true;
    const img = el('img', { className: 'final', alt: a.filename || 'Generated image', decoding: 'async' });
    img.dataset.objectId = a.object_id;
    const link = el('a', { href: a.url || '#', target: '_blank', rel: 'noopener noreferrer', textContent: 'open' });
    this.caption.replaceChildren(`${a.filename} · ${a.mime_type} · ${size(a.size_bytes)} · `, link);
    if (!a.url) {
      this.caption.append(' (no download URL right now; reopen the conversation for a fresh one)');
      return;
    }
    if (this.img) {
      img.addEventListener('load', () => this.setImage(img), { once: true });
      img.addEventListener('error', () => {
        this.setImage(img);
        this.caption.append(' (the image did not load)');
      }, { once: true });
    } else {
      this.setImage(img);
    }
    img.src = a.url;
  }

  failed(code, message) {
    this.isFinal = true;
    if (this.img) this.img.remove();
    this.img = null;
    this.figure.classList.add('failed');
    this.caption.replaceChildren(el('span', { className: 'failed', textContent: `Image failed (${code}): ${message}` }));
  }
}

/** A message bubble in the log. */
export class Bubble {
  constructor(log, role) {
    this.who = el('div', { className: 'who', textContent: role === 'user' ? 'You' : 'Assistant' });
    this.text = el('p', { className: 'text' });
    this.images = el('div', { className: 'images' });
    this.noticeLine = el('p', { className: 'notice', hidden: true });
    this.li = el('li', { className: `msg ${role}` }, [this.who, this.text, this.images, this.noticeLine]);
    this.slots = new Map();
    log.append(this.li);
  }

  slot(key) {
    let s = this.slots.get(key);
    if (!s) {
      s = new ImageSlot(this.images);
      this.slots.set(key, s);
    }
    return s;
  }

  meta(text) {
    this.who.textContent = `Assistant · ${text}`;
  }

  append(delta) {
    this.text.append(delta);
    this.li.scrollIntoView({ block: 'end' });
  }

  notice(text) {
    this.noticeLine.textContent = text;
    this.noticeLine.hidden = !text;
  }

  fail(message) {
    this.li.append(el('p', { className: 'failed', textContent: message }));
    this.li.classList.remove('streaming');
  }

  /** A stored message: its text and attachments with the fresh URLs the server minted. */
  fill(m) {
    this.text.textContent = m.content;
    for (const a of m.attachments || []) this.slot(a.tool_call_id || a.object_id).final(a);
  }

  /** A local thumbnail (an upload's blob: URL) shown on the user's message. */
  thumbnail(src, name) {
    const s = this.slot(name);
    s.setImage(el('img', { src, alt: `Attached ${name}` }));
    s.caption.textContent = `attached: ${name}`;
  }

  /** Applies one stream event; answers the terminal error, if this was one. */
  apply(type, data) {
    switch (type) {
      case 'run.started':
        this.meta(`${data.agent} · ${data.model}`);
        break;
      case 'message.delta':
        this.append(data.delta);
        break;
      case 'image.progress':
        this.slot(data.tool_call_id).status(data.status.replace('_', ' '));
        break;
      case 'image.partial':
        this.slot(data.tool_call_id).preview(`data:${data.mime_type};base64,${data.b64}`, data.partial_image_index);
        break;
      case 'attachment': {
        const a = data.attachment;
        this.slot(a.tool_call_id || a.object_id).final(a);
        break;
      }
      case 'image.failed':
        this.slot(data.tool_call_id).failed(data.code, data.message);
        break;
      case 'run.completed':
        this.li.classList.remove('streaming');
        if (!this.text.textContent) this.text.textContent = data.message.content;
        for (const a of data.message.attachments || []) {
          const key = a.tool_call_id || a.object_id;
          if (!this.slots.has(key)) this.slot(key).final(a);
        }
        break;
      case 'error':
        this.fail(`Error (${data.code}): ${data.message}`);
        return data;
      default:
        break;
    }
    return null;
  }
}
