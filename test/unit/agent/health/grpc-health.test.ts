import {
  decodeHealthCheckRequest,
  decodeHealthCheckResponse,
  encodeHealthCheckRequest,
  encodeHealthCheckResponse,
  frameMessage,
  SERVING_STATUS,
  unframeMessage,
} from '../../../../src/agent/health/grpc-health';

describe('gRPC health messages', () => {
  it('encodes the service name as field 1, wire type 2', () => {
    expect(encodeHealthCheckRequest('db').toString('hex')).toBe('0a026462');
  });

  it('encodes the empty service as the empty message', () => {
    expect(encodeHealthCheckRequest('')).toHaveLength(0);
  });

  it('round-trips a long service name (multi-byte length)', () => {
    const name = 'x'.repeat(300);
    expect(decodeHealthCheckRequest(encodeHealthCheckRequest(name))).toBe(name);
  });

  it.each(Object.entries(SERVING_STATUS))('decodes status %s', (_name, status) => {
    expect(decodeHealthCheckResponse(encodeHealthCheckResponse(status))).toBe(status);
  });

  it('reads SERVING from the bytes a Go server sends', () => {
    expect(decodeHealthCheckResponse(Buffer.from('0801', 'hex'))).toBe(1);
  });

  it('skips unknown fields', () => {
    // field 2 (string "hi"), field 3 (fixed32), then status = 2
    const msg = Buffer.from('0a00' + '12026869' + '1d01020304' + '0802', 'hex');
    expect(decodeHealthCheckResponse(msg)).toBe(2);
  });

  it('refuses a truncated field', () => {
    expect(() => decodeHealthCheckResponse(Buffer.from('0a05', 'hex'))).toThrow(/truncated/);
  });
});

describe('gRPC framing', () => {
  it('prefixes a message with a zero flag and its big-endian length', () => {
    expect(frameMessage(Buffer.from('0801', 'hex')).toString('hex')).toBe('00000000020801');
  });

  it('reads the message back', () => {
    expect(unframeMessage(frameMessage(Buffer.from('abc'))).toString()).toBe('abc');
  });

  it.each([
    ['a body shorter than the prefix', '0000'],
    ['a truncated message', '000000000508'],
    ['a compressed message', '01000000020801'],
  ])('refuses %s', (_name, hex) => {
    expect(() => unframeMessage(Buffer.from(hex, 'hex'))).toThrow();
  });
});
