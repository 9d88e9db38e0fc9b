// One gateway route as an API Management API: mounted at the route prefix, HTTPS only, no
// subscription key (callers authenticate with their Entra token, checked by the policy), a
// catch-all operation per MCP method, and the route's rendered policy at API scope.
//
// APIM forwards what follows the API path to the backend, so a request to
// /<path>/mcp reaches <backend>/mcp; the policy's rewrite-uri states the same explicitly.

@description('Name of the existing API Management instance.')
param apimName string

@description('The route name from gateway.toml; names the API.')
param routeName string

@description('The route prefix without its leading "/", e.g. contoso-mcp.')
param path string

@description('The backend base URL (the route\'s apim_backend_url); the policy sets it too.')
param serviceUrl string

@description('The rendered policy document of the route (policies/<route>.policy.xml).')
param policyXml string

// Streamable HTTP MCP uses POST for messages, GET for the server's event stream and DELETE to
// end a session.
var methods = [
  'GET'
  'POST'
  'DELETE'
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

resource operations 'Microsoft.ApiManagement/service/apis/operations@2022-08-01' = [
  for method in methods: {
    parent: api
    name: '${toLower(method)}-all'
    properties: {
      displayName: '${method} /*'
      method: method
      urlTemplate: '/*'
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

output path string = api.properties.path
