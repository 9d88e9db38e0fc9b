// The MCP routes of deploy/azure/gateway.toml in the deployment's API Management, through the
// same module apim/main.bicep uses (apim/route-api.bicep: only the MCP endpoint and its metadata,
// the rendered policy on both APIs). The policies are the ones hooks/preprovision.sh rendered
// from gateway.toml with `gateway render-apim`; the two hosts that do not exist before the
// deployment are placeholders in them and are replaced here, the same text everywhere it occurs
// (set-backend-service, the metadata document, WWW-Authenticate, the route's URL audience):
//   https://mcp-edge.invalid          -> API Management's gateway URL
//   https://<route>.backend.invalid   -> the route's Container App
// One module per route because loadTextContent needs a constant path.

param apimName string

@description('https://<apim>.azure-api.net, without a trailing slash.')
param gatewayUrl string

param contosoBackendUrl string
param fabrikamBackendUrl string
param contosoAgentBackendUrl string

var edge = loadJsonContent('../generated/routes.json')
var edgePlaceholder = 'https://mcp-edge.invalid'

module contoso '../../../apim/route-api.bicep' = {
  name: 'mcp-route-contoso'
  params: {
    apimName: apimName
    routeName: 'contoso'
    path: edge.routes.contoso.path
    serviceUrl: contosoBackendUrl
    policyXml: replace(replace(loadTextContent('../generated/policies/contoso.policy.xml'), edgePlaceholder, gatewayUrl), 'https://contoso.backend.invalid', contosoBackendUrl)
  }
}

module fabrikam '../../../apim/route-api.bicep' = {
  name: 'mcp-route-fabrikam'
  params: {
    apimName: apimName
    routeName: 'fabrikam'
    path: edge.routes.fabrikam.path
    serviceUrl: fabrikamBackendUrl
    policyXml: replace(replace(loadTextContent('../generated/policies/fabrikam.policy.xml'), edgePlaceholder, gatewayUrl), 'https://fabrikam.backend.invalid', fabrikamBackendUrl)
  }
}

module contosoAgent '../../../apim/route-api.bicep' = {
  name: 'mcp-route-contoso-agent'
  params: {
    apimName: apimName
    routeName: 'contoso-agent'
    path: edge.routes['contoso-agent'].path
    serviceUrl: contosoAgentBackendUrl
    policyXml: replace(replace(loadTextContent('../generated/policies/contoso-agent.policy.xml'), edgePlaceholder, gatewayUrl), 'https://contoso-agent.backend.invalid', contosoAgentBackendUrl)
  }
}

output mcpUrls object = {
  contoso: '${gatewayUrl}/${contoso.outputs.path}/mcp'
  fabrikam: '${gatewayUrl}/${fabrikam.outputs.path}/mcp'
  contosoAgent: '${gatewayUrl}/${contosoAgent.outputs.path}/mcp'
}
