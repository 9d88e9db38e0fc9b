// One gateway route as API Management APIs: the route's API mounted at the route prefix, HTTPS
// only, no subscription key (callers authenticate with their Entra token, checked by the policy),
// with only the operations the local gateway answers: its MCP endpoint /mcp (POST, GET, DELETE)
// and GET on its protected-resource metadata paths below the prefix. A second API serves the
// RFC 9728 metadata path /.well-known/oauth-protected-resource/<prefix>/mcp. Both carry the
// route's rendered policy at API scope; it answers the metadata itself, before any token check.
//
// A path or method without an operation is answered by API Management (404) and never reaches
// the backend: /<path>/readyz, /<path>/healthz and the like stay inside. The policy's
// rewrite-uri sends /<path>/mcp?query to <backend>/mcp?query, as the local gateway does.

@description('Name of the existing API Management instance.')
param apimName string

@description('The route name from gateway.toml; names the APIs.')
param routeName string

@description('The route prefix without its leading "/", e.g. contoso-mcp.')
param path string

@description('The backend base URL (the route\'s apim_backend_url); the policy sets it too.')
param serviceUrl string

@description('The rendered policy document of the route (policies/<route>.policy.xml).')
param policyXml string

// Streamable HTTP MCP uses POST for messages, GET for the server's event stream and DELETE to
// end a session.
var mcpMethods = [
  'POST'
  'GET'
  'DELETE'
]

// The metadata paths below the prefix (gateway/src/routing.rs PREFIXED_METADATA_PATHS).
var metadataPaths = [
  '/.well-known/oauth-protected-resource'
  '/.well-known/oauth-protected-resource/mcp'
  '/mcp/.well-known/oauth-protected-resource'
]

resource apim 'Microsoft.ApiManagement/service@2022-08-01' existing = {
  name: apimName
}

resource api 'Microsoft.ApiManagement/service/apis@2022-08-01' = {
  parent: apim
  name: routeName
  properties: {
    displayName: 'MCP ${routeName}'
    path: path
    protocols: [
      'https'
    ]
    subscriptionRequired: false
    serviceUrl: serviceUrl
    apiType: 'http'
  }
}

resource mcpOperations 'Microsoft.ApiManagement/service/apis/operations@2022-08-01' = [
  for method in mcpMethods: {
    parent: api
    name: '${toLower(method)}-mcp'
    properties: {
      displayName: '${method} /mcp'
      method: method
      urlTemplate: '/mcp'
    }
  }
]

resource metadataOperations 'Microsoft.ApiManagement/service/apis/operations@2022-08-01' = [
  for (metadataPath, i) in metadataPaths: {
    parent: api
    name: 'get-metadata-${i}'
    properties: {
      displayName: 'GET ${metadataPath}'
      method: 'GET'
      urlTemplate: metadataPath
    }
  }
]

resource policy 'Microsoft.ApiManagement/service/apis/policies@2022-08-01' = {
  parent: api
  name: 'policy'
  properties: {
    format: 'rawxml'
    value: policyXml
  }
}

// /.well-known/oauth-protected-resource/<path>/mcp, the RFC 9728 metadata path of the resource
// /<path>/mcp, lies outside the route's API path: an API of its own with that one operation.
resource metadataApi 'Microsoft.ApiManagement/service/apis@2022-08-01' = {
  parent: apim
  name: '${routeName}-metadata'
  properties: {
    displayName: 'MCP ${routeName} metadata'
    path: '.well-known/oauth-protected-resource/${path}'
    protocols: [
      'https'
    ]
    subscriptionRequired: false
    serviceUrl: serviceUrl
    apiType: 'http'
  }
}

resource metadataApiOperation 'Microsoft.ApiManagement/service/apis/operations@2022-08-01' = {
  parent: metadataApi
  name: 'get-metadata'
  properties: {
    displayName: 'GET /mcp (metadata)'
    method: 'GET'
    urlTemplate: '/mcp'
  }
}

resource metadataApiPolicy 'Microsoft.ApiManagement/service/apis/policies@2022-08-01' = {
  parent: metadataApi
  name: 'policy'
  properties: {
    format: 'rawxml'
    value: policyXml
  }
}

output path string = api.properties.path
output metadataPath string = metadataApi.properties.path
