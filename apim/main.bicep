// The MCP routes of gateway.toml in an existing Azure API Management instance: per route, an API
// mounted at the route prefix exposing only its MCP endpoint and metadata, and one for its RFC 9728
// metadata path (route-api.bicep), each with the policy `gateway render-apim` rendered from the
// same file (policies/<route>.policy.xml), so production enforces what the local gateway enforces.
//
//   cargo run -p gateway -- render-apim --config apim/gateway.toml --out apim/policies
//   az deployment group create -g <resource group> -f apim/main.bicep -p apimName=<instance>
//
// Keep the routes below in step with gateway.toml: one module per [[routes]] table, with its
// name, its prefix without the leading "/" and its apim_backend_url. gateway/tests/apim_golden.rs
// checks that they match. (loadTextContent needs a constant path, hence no loop over routes.)

@description('Name of the existing API Management instance, in this resource group.')
param apimName string

module contoso 'route-api.bicep' = {
  name: 'mcp-route-contoso'
  params: {
    apimName: apimName
    routeName: 'contoso'
    path: 'contoso-mcp'
    serviceUrl: 'https://contoso-mcp.example.azurecontainerapps.io'
    policyXml: loadTextContent('policies/contoso.policy.xml')
  }
}

module fabrikam 'route-api.bicep' = {
  name: 'mcp-route-fabrikam'
  params: {
    apimName: apimName
    routeName: 'fabrikam'
    path: 'fabrikam-mcp'
    serviceUrl: 'https://fabrikam-mcp.example.azurecontainerapps.io'
    policyXml: loadTextContent('policies/fabrikam.policy.xml')
  }
}

module contosoAgent 'route-api.bicep' = {
  name: 'mcp-route-contoso-agent'
  params: {
    apimName: apimName
    routeName: 'contoso-agent'
    path: 'contoso-agent'
    serviceUrl: 'https://contoso-agent.example.azurecontainerapps.io'
    policyXml: loadTextContent('policies/contoso-agent.policy.xml')
  }
}

output apiPaths array = [
  contoso.outputs.path
  fabrikam.outputs.path
  contosoAgent.outputs.path
]
