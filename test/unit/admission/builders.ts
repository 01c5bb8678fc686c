// Fixture builders with modifiers for AdmissionReviews and Pods:
// review(withPod(pod('web', withAnnotation(k, v))), withDryRun()).

export type Json = Record<string, unknown>;
export type Modifier<T> = (value: T) => T;

let counter = 0;
/** A fresh uid per call, shaped like the API server's. */
export function nextUid(): string {
  counter += 1;
  return `6f0c1d2e-0000-4000-8000-${String(counter).padStart(12, '0')}`;
}

export function pod(name: string, ...mods: Modifier<Json>[]): Json {
  const base: Json = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'shop', labels: { app: name } },
    spec: {
      serviceAccountName: 'default',
      containers: [
        {
          name: 'app',
          image: 'registry.example/app:1.2.3',
          ports: [{ containerPort: 8080, protocol: 'TCP' }],
          resources: {},
          terminationMessagePath: '/dev/termination-log',
          terminationMessagePolicy: 'File',
          imagePullPolicy: 'IfNotPresent',
        },
      ],
      restartPolicy: 'Always',
      dnsPolicy: 'ClusterFirst',
    },
  };
  return mods.reduce((p, m) => m(p), base);
}

const meta = (p: Json): Json => (p.metadata ?? {}) as Json;
const spec = (p: Json): Json => (p.spec ?? {}) as Json;

export const withAnnotation =
  (key: string, value: string): Modifier<Json> =>
  (p) => ({
    ...p,
    metadata: {
      ...meta(p),
      annotations: { ...((meta(p).annotations ?? {}) as Json), [key]: value },
    },
  });
export const withLabel =
  (key: string, value: string): Modifier<Json> =>
  (p) => ({
    ...p,
    metadata: { ...meta(p), labels: { ...((meta(p).labels ?? {}) as Json), [key]: value } },
  });
export const withHostNetwork = (): Modifier<Json> => (p) => ({
  ...p,
  spec: { ...spec(p), hostNetwork: true },
});
export const withGenerateName =
  (prefix: string): Modifier<Json> =>
  (p) => {
    const { name: _name, ...rest } = meta(p);
    return { ...p, metadata: { ...rest, generateName: prefix } };
  };
export const withPodNamespace =
  (ns: string | undefined): Modifier<Json> =>
  (p) => {
    const { namespace: _ns, ...rest } = meta(p);
    return { ...p, metadata: ns === undefined ? rest : { ...rest, namespace: ns } };
  };

export function review(...mods: Modifier<Json>[]): Json {
  const object = pod('web');
  const base: Json = {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: nextUid(),
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      namespace: 'shop',
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller', groups: [] },
      object,
      oldObject: null,
      dryRun: false,
      options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
    },
  };
  return mods.reduce((r, m) => m(r), base);
}

const req = (r: Json): Json => (r.request ?? {}) as Json;
export const withRequest =
  (fields: Json): Modifier<Json> =>
  (r) => ({ ...r, request: { ...req(r), ...fields } });
export const withPod = (object: unknown): Modifier<Json> => withRequest({ object });
export const withUid = (uid: unknown): Modifier<Json> => withRequest({ uid });
export const withoutUid = (): Modifier<Json> => (r) => {
  const { uid: _uid, ...rest } = req(r);
  return { ...r, request: rest };
};
export const withOperation = (operation: string): Modifier<Json> => withRequest({ operation });
export const withKind = (group: string, version: string, kind: string): Modifier<Json> =>
  withRequest({ kind: { group, version, kind } });
export const withNamespace = (namespace: string): Modifier<Json> => withRequest({ namespace });
export const withDryRun = (): Modifier<Json> => withRequest({ dryRun: true });
export const withSubResource = (subResource: string): Modifier<Json> =>
  withRequest({ subResource });

export function uidOf(r: Json): string {
  return req(r).uid as string;
}
export function objectOf(r: Json): Json {
  return req(r).object as Json;
}

/** The Status of a review answered after an internal error (failOpen off). */
export const INTERNAL_ERROR_STATUS = {
  status: 'Failure',
  code: 500,
  reason: 'InternalError',
  message: 'INJ_ERR_INTERNAL: injection failed',
} as const;
