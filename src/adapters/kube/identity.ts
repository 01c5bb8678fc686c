// Kubernetes user names of service accounts: `system:serviceaccount:<namespace>:<name>`.

import type { WorkloadIdentity } from '../../ca/ports';

export const SERVICE_ACCOUNT_PREFIX = 'system:serviceaccount:';
export const SERVICE_ACCOUNTS_GROUP = 'system:serviceaccounts';

// A namespace is a DNS label; a ServiceAccount name is a DNS subdomain.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN =
  /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** The service account a Kubernetes user name stands for, or null if it is not one. */
export function serviceAccountOfUsername(username: string | undefined): WorkloadIdentity | null {
  if (username === undefined || !username.startsWith(SERVICE_ACCOUNT_PREFIX)) return null;
  const rest = username.slice(SERVICE_ACCOUNT_PREFIX.length).split(':');
  if (rest.length !== 2) return null;
  const [namespace, serviceAccount] = rest;
  if (namespace === undefined || serviceAccount === undefined) return null;
  if (!DNS_LABEL.test(namespace) || !DNS_SUBDOMAIN.test(serviceAccount)) return null;
  return { namespace, serviceAccount };
}
