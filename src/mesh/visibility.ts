// Which proxies see a Service: Istio's `networking.istio.io/exportTo` annotation on the Service
// (`*` every namespace, `.` its own, `~` none, or namespace names; several comma-separated). A
// Service without the annotation is visible everywhere, as in Istio with the default
// `defaultServiceExportTo`. Pure.

export function isVisible(
  exportTo: readonly string[] | null,
  serviceNamespace: string,
  proxyNamespace: string,
): boolean {
  if (exportTo === null) return true;
  for (const entry of exportTo) {
    if (entry === '*') return true;
    if (entry === '.' && proxyNamespace === serviceNamespace) return true;
    if (entry === proxyNamespace) return true;
  }
  return false;
}
