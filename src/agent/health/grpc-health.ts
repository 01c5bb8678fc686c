// grpc.health.v1.Health/Check by hand: the gRPC wire format is a 5-byte prefix (compressed flag,
// big-endian length) before a protobuf message, and the health messages have one field each:
//   HealthCheckRequest  { string service = 1; }
//   HealthCheckResponse { ServingStatus status = 1; }  UNKNOWN 0, SERVING 1, NOT_SERVING 2,
//                                                      SERVICE_UNKNOWN 3
// No grpc dependency: the agent needs one unary call in plaintext HTTP/2, as the kubelet makes.

export const HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check';

export const SERVING_STATUS = {
  UNKNOWN: 0,
  SERVING: 1,
  NOT_SERVING: 2,
  SERVICE_UNKNOWN: 3,
} as const;

function encodeVarint(value: number): Buffer {
  const bytes: number[] = [];
  let n = value;
  while (n >= 0x80) {
    bytes.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  bytes.push(n);
  return Buffer.from(bytes);
}

interface Varint {
  readonly value: number;
  readonly next: number;
}

function decodeVarint(buf: Buffer, offset: number): Varint {
  let value = 0;
  let factor = 1;
  for (let i = offset; i < buf.length && i < offset + 10; i++) {
    const byte = buf[i] ?? 0;
    value += (byte & 0x7f) * factor;
    if ((byte & 0x80) === 0) return { value, next: i + 1 };
    factor *= 128;
  }
  throw new Error('truncated varint');
}

/** A gRPC length-prefixed message frame (uncompressed). */
export function frameMessage(message: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt8(0, 0);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

/** The first complete message of a gRPC body; throws on a truncated or compressed one. */
export function unframeMessage(body: Buffer): Buffer {
  if (body.length < 5) throw new Error('gRPC body shorter than its 5-byte prefix');
  if (body.readUInt8(0) !== 0) throw new Error('compressed gRPC messages are not supported');
  const length = body.readUInt32BE(1);
  if (body.length < 5 + length) throw new Error('truncated gRPC message');
  return body.subarray(5, 5 + length);
}

/** HealthCheckRequest{service}: the empty service is the server's overall health. */
export function encodeHealthCheckRequest(service: string): Buffer {
  if (service === '') return Buffer.alloc(0);
  const bytes = Buffer.from(service, 'utf8');
  return Buffer.concat([Buffer.from([0x0a]), encodeVarint(bytes.length), bytes]);
}

export function decodeHealthCheckRequest(message: Buffer): string {
  let service = '';
  forEachField(message, (field, wireType, value) => {
    if (field === 1 && wireType === 2 && Buffer.isBuffer(value)) service = value.toString('utf8');
  });
  return service;
}

export function encodeHealthCheckResponse(status: number): Buffer {
  return status === 0
    ? Buffer.alloc(0)
    : Buffer.concat([Buffer.from([0x08]), encodeVarint(status)]);
}

/** The status field of a HealthCheckResponse (0 when absent, as proto3 defaults). */
export function decodeHealthCheckResponse(message: Buffer): number {
  let status = 0;
  forEachField(message, (field, wireType, value) => {
    if (field === 1 && wireType === 0 && typeof value === 'number') status = value;
  });
  return status;
}

/** Walks the fields of a protobuf message; unknown fields are skipped as the spec requires. */
function forEachField(
  message: Buffer,
  visit: (field: number, wireType: number, value: number | Buffer) => void,
): void {
  let offset = 0;
  while (offset < message.length) {
    const key = decodeVarint(message, offset);
    const field = Math.floor(key.value / 8);
    const wireType = key.value & 7;
    offset = key.next;
    if (wireType === 0) {
      const v = decodeVarint(message, offset);
      visit(field, wireType, v.value);
      offset = v.next;
    } else if (wireType === 2) {
      const len = decodeVarint(message, offset);
      const end = len.next + len.value;
      if (end > message.length) throw new Error('truncated protobuf field');
      visit(field, wireType, message.subarray(len.next, end));
      offset = end;
    } else if (wireType === 1) {
      offset += 8;
    } else if (wireType === 5) {
      offset += 4;
    } else {
      throw new Error(`unsupported protobuf wire type ${wireType}`);
    }
  }
  if (offset > message.length) throw new Error('truncated protobuf field');
}
