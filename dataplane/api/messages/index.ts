// Anthropic's Messages API (`POST /v1/messages`) on the gateway: routed by `model` like chat.
// Anthropic providers get the body as it is and answer as they do; every other target (self-hosted
// engines, OpenAI-type and Gemini providers) gets it translated to OpenAI chat (request.ts) and
// its answer translated back (response.ts). Errors leave in Anthropic's shape (errors.ts).
import { GatewayError } from '../../errors.js'
import type { Inbound } from '../../inbound.js'
import { messagesToChat } from './request.js'

export { messagesAnswer } from './response.js'

/**
 * The chat translation of a Messages body, or why it has none (sent to the client only if a
 * target that needs the translation is tried: Anthropic providers take what does not translate).
 */
export function translateMessages(body: Readonly<Record<string, unknown>>): {
  readonly chat?: Record<string, unknown>
  readonly error?: GatewayError
} {
  try {
    return { chat: messagesToChat(body) }
  } catch (e) {
    if (e instanceof GatewayError) return { error: e }
    throw e
  }
}

/**
 * The inbound request without its Node response: a /v1/messages answer is rewritten on its way
 * out, so targets return a Response instead of writing to the socket themselves.
 */
export function rewrittenInbound(i: Inbound): Inbound {
  return {
    remoteAddress: i.remoteAddress,
    header: i.header,
    // Called through `i`: Node's inbound has them as methods (inbound.ts NodeInbound).
    headers: () => i.headers(),
    readBody: (limit) => i.readBody(limit),
    onClientGone: (cb) => i.onClientGone(cb),
  }
}
