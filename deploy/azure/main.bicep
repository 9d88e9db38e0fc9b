// The platform in Azure, as `azd up` deploys it (azure.yaml at the repository root): a resource
// group holding
//   - a private network (modules/network.bicep) with an internal Container Apps environment and
//     Log Analytics;
//   - one container app per service: the Contoso and the Fabrikam tools services and the Contoso
//     experts (agent service), each with a user-assigned identity of its own;
//   - a container registry (no admin user), Cosmos DB (keys off, serverless) and Azure OpenAI
//     (keys off), both behind private endpoints;
//   - API Management, the only public door, with the routes of gateway.toml.
// No secret is created or stored for Azure resources: every service reaches the registry,
// Cosmos DB and Azure OpenAI with its identity. The one secret is the experts' Entra client
// secret, which the agent service's token exchange needs (README.md, "Choices a reviewer
// should check").
//
// gateway.toml is the deployment's tenant and route model; hooks/preprovision.sh turns it into
// generated/ (policies, routes.json), read below at compile time.

targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('The azd environment name; names the resource group and seeds the resource names.')
param environmentName string

@minLength(1)
@description('Region of every resource (Azure OpenAI has its own parameter, for model availability).')
param location string

@description('The person (or pipeline) running azd: may push images. Empty for nobody.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Client id of the Contoso experts\' Entra application (gateway.toml, route contoso-agent).')
param agentClientId string

@allowed([
  'Developer'
  'Premium'
])
@description('API Management tier: a classic tier that can be injected into the network.')
param apimSku string = 'Developer'

param apimPublisherEmail string
param apimPublisherName string = 'Contoso MCP platform'

@description('Serverless Cosmos DB; false: provisioned autoscale throughput per database.')
param cosmosServerless bool = true

@description('Give the services their Cosmos DB data role on the account, not only their database.')
param cosmosRoleAtAccountScope bool = false

@description('Region of Azure OpenAI, where the models are offered; empty: location.')
param openAiLocation string = ''
param chatDeploymentName string = 'gpt-4o-mini'
param chatModelName string = 'gpt-4o-mini'
param chatModelVersion string = '2024-07-18'
param chatSkuName string = 'GlobalStandard'
param chatCapacity int = 30

@description('Embeddings for the tools services\' hybrid knowledge-base search (BM25 without them).')
param embeddingsEnabled bool = true
param embeddingDeploymentName string = 'text-embedding-3-small'
param embeddingModelName string = 'text-embedding-3-small'
param embeddingModelVersion string = '1'
param embeddingSkuName string = 'Standard'
param embeddingCapacity int = 30

@minValue(0)
param minReplicas int = 1
param toolsMaxReplicas int = 5
param agentMaxReplicas int = 3

// Set by azd (main.parameters.json): whether each app exists, and the image it last deployed.
param toolsContosoExists bool = false
param toolsFabrikamExists bool = false
param agentExists bool = false
param toolsContosoImageName string = ''
param toolsFabrikamImageName string = ''
param agentImageName string = ''

var token = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

var edge = loadJsonContent('generated/routes.json')
var edgePlaceholder = 'https://mcp-edge.invalid'

// API Management's gateway URL follows from its name, so the apps can be given their public
// URLs without waiting the better part of an hour for the instance.
var apimName = 'apim-${token}'
var apimUrl = 'https://${apimName}.azure-api.net'

// The services listen where their container apps send traffic (BIND_ADDR = 0.0.0.0:<port>);
// 8000 is also what deploy/Dockerfile's images default to.
var toolsPort = 8000
var agentPort = 8000

var apps = {
  toolsContoso: 'ca-tools-contoso'
  toolsFabrikam: 'ca-tools-fabrikam'
  agent: 'ca-agent'
}

// The databases: one per service, so each identity's data role covers its own data only.
var databases = {
  toolsContoso: 'contoso'
  toolsFabrikam: 'fabrikam'
  agent: 'contoso-agent'
}

resource rg 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    name: 'log-${token}'
    location: location
    tags: tags
  }
}

module network 'modules/network.bicep' = {
  name: 'network'
  scope: rg
  params: {
    name: 'vnet-${token}'
    location: location
    tags: tags
  }
}

module toolsContosoIdentity 'modules/identity.bicep' = {
  name: 'identity-tools-contoso'
  scope: rg
  params: {
    name: 'id-tools-contoso-${token}'
    location: location
    tags: tags
  }
}

module toolsFabrikamIdentity 'modules/identity.bicep' = {
  name: 'identity-tools-fabrikam'
  scope: rg
  params: {
    name: 'id-tools-fabrikam-${token}'
    location: location
    tags: tags
  }
}

module agentIdentity 'modules/identity.bicep' = {
  name: 'identity-agent'
  scope: rg
  params: {
    name: 'id-agent-${token}'
    location: location
    tags: tags
  }
}

module registry 'modules/registry.bicep' = {
  name: 'registry'
  scope: rg
  params: {
    name: 'cr${token}'
    location: location
    tags: tags
    pullPrincipalIds: [
      toolsContosoIdentity.outputs.principalId
      toolsFabrikamIdentity.outputs.principalId
      agentIdentity.outputs.principalId
    ]
    pushPrincipalId: principalId
    pushPrincipalType: principalType
  }
}

module cosmos 'modules/cosmos.bicep' = {
  name: 'cosmos'
  scope: rg
  params: {
    name: 'cosmos-${token}'
    location: location
    tags: tags
    serverless: cosmosServerless
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    dnsZoneId: network.outputs.cosmosZoneId
  }
}

// One database after the other: Cosmos DB takes one role-assignment change per account at a time.
module toolsContosoDatabase 'modules/cosmos-database.bicep' = {
  name: 'cosmos-db-contoso'
  scope: rg
  params: {
    accountName: cosmos.outputs.name
    databaseName: databases.toolsContoso
    kind: 'tools'
    principalId: toolsContosoIdentity.outputs.principalId
    roleAtAccountScope: cosmosRoleAtAccountScope
    serverless: cosmosServerless
  }
}

module toolsFabrikamDatabase 'modules/cosmos-database.bicep' = {
  name: 'cosmos-db-fabrikam'
  scope: rg
  params: {
    accountName: cosmos.outputs.name
    databaseName: databases.toolsFabrikam
    kind: 'tools'
    principalId: toolsFabrikamIdentity.outputs.principalId
    roleAtAccountScope: cosmosRoleAtAccountScope
    serverless: cosmosServerless
  }
  dependsOn: [
    toolsContosoDatabase
  ]
}

module agentDatabase 'modules/cosmos-database.bicep' = {
  name: 'cosmos-db-agent'
  scope: rg
  params: {
    accountName: cosmos.outputs.name
    databaseName: databases.agent
    kind: 'agent'
    principalId: agentIdentity.outputs.principalId
    roleAtAccountScope: cosmosRoleAtAccountScope
    serverless: cosmosServerless
  }
  dependsOn: [
    toolsFabrikamDatabase
  ]
}

module openAi 'modules/openai.bicep' = {
  name: 'openai'
  scope: rg
  params: {
    name: 'oai-${token}'
    location: empty(openAiLocation) ? location : openAiLocation
    tags: tags
    chatDeploymentName: chatDeploymentName
    chatModelName: chatModelName
    chatModelVersion: chatModelVersion
    chatSkuName: chatSkuName
    chatCapacity: chatCapacity
    embeddingsEnabled: embeddingsEnabled
    embeddingDeploymentName: embeddingDeploymentName
    embeddingModelName: embeddingModelName
    embeddingModelVersion: embeddingModelVersion
    embeddingSkuName: embeddingSkuName
    embeddingCapacity: embeddingCapacity
    // The experts' chat model; the tools services only when they embed.
    userPrincipalIds: concat([
      agentIdentity.outputs.principalId
    ], embeddingsEnabled ? [
      toolsContosoIdentity.outputs.principalId
      toolsFabrikamIdentity.outputs.principalId
    ] : [])
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    dnsZoneId: network.outputs.openAiZoneId
  }
}

module appsEnvironment 'modules/container-apps-environment.bicep' = {
  name: 'container-apps-environment'
  scope: rg
  params: {
    name: 'cae-${token}'
    location: location
    tags: tags
    subnetId: network.outputs.acaSubnetId
    logAnalyticsWorkspaceId: monitoring.outputs.id
  }
}

module environmentDns 'modules/container-apps-dns.bicep' = {
  name: 'container-apps-dns'
  scope: rg
  params: {
    zoneName: appsEnvironment.outputs.defaultDomain
    staticIp: appsEnvironment.outputs.staticIp
    vnetId: network.outputs.id
    tags: tags
  }
}

// Where each app answers inside the network: https://<app>.<environment domain>.
var toolsContosoHost = '${apps.toolsContoso}.${appsEnvironment.outputs.defaultDomain}'
var toolsFabrikamHost = '${apps.toolsFabrikam}.${appsEnvironment.outputs.defaultDomain}'
var agentHost = '${apps.agent}.${appsEnvironment.outputs.defaultDomain}'

// What every service reads the same way. Audit events go to stdout as JSON lines (and so to Log
// Analytics, where they are kept); DB_PATH (the image's /data/*.db) holds only a replica's local
// copy of the audit trail, on the replica's ephemeral disk, hence the short retention.
var serviceEnv = [
  {
    name: 'AUTH_ISSUER'
    value: edge.issuer
  }
  {
    name: 'USE_COSMOSDB'
    value: 'true'
  }
  {
    name: 'COSMOSDB_ENDPOINT'
    value: cosmos.outputs.endpoint
  }
  {
    name: 'AZURE_CREDENTIAL'
    value: 'managed-identity'
  }
  {
    name: 'LOG_FORMAT'
    value: 'json'
  }
  {
    name: 'AUDIT_RETENTION_DAYS'
    value: '7'
  }
]

var embeddingEnv = embeddingsEnabled ? [
  {
    name: 'AZURE_OPENAI_ENDPOINT'
    value: openAi.outputs.endpoint
  }
  {
    name: 'AZURE_OPENAI_EMBEDDING_DEPLOYMENT'
    value: openAi.outputs.embeddingDeploymentName
  }
] : []

module toolsContoso 'modules/container-app.bicep' = {
  name: 'app-tools-contoso'
  scope: rg
  params: {
    name: apps.toolsContoso
    location: location
    tags: tags
    serviceName: 'tools-contoso'
    environmentId: appsEnvironment.outputs.id
    identityId: toolsContosoIdentity.outputs.id
    registryServer: registry.outputs.loginServer
    exists: toolsContosoExists
    imageName: toolsContosoImageName
    targetPort: toolsPort
    minReplicas: minReplicas
    maxReplicas: toolsMaxReplicas
    env: concat(serviceEnv, embeddingEnv, [
      {
        name: 'BIND_ADDR'
        value: '0.0.0.0:${toolsPort}'
      }
      {
        name: 'AZURE_CLIENT_ID'
        value: toolsContosoIdentity.outputs.clientId
      }
      {
        name: 'COSMOS_DATABASE_NAME'
        value: toolsContosoDatabase.outputs.name
      }
      {
        name: 'PUBLIC_BASE_URL'
        value: '${apimUrl}/${edge.routes.contoso.path}'
      }
      {
        name: 'MCP_API_AUDIENCE'
        value: replace(join(edge.routes.contoso.audiences, ','), edgePlaceholder, apimUrl)
      }
      {
        name: 'ALLOWED_TENANTS'
        value: join(edge.routes.contoso.tenants, ',')
      }
      {
        // The experts call this service with tokens exchanged for their callers.
        name: 'TRUSTED_ACTORS'
        value: agentClientId
      }
      {
        name: 'ALLOWED_HOSTS'
        value: toolsContosoHost
      }
      {
        name: 'SEED_ON_STARTUP'
        value: 'true'
      }
      {
        name: 'SEED_CUSTOMER_COUNT'
        value: '250'
      }
      {
        name: 'OTEL_SERVICE_NAME'
        value: 'tools-contoso'
      }
    ])
  }
  dependsOn: [
    registry
    environmentDns
  ]
}

module toolsFabrikam 'modules/container-app.bicep' = {
  name: 'app-tools-fabrikam'
  scope: rg
  params: {
    name: apps.toolsFabrikam
    location: location
    tags: tags
    serviceName: 'tools-fabrikam'
    environmentId: appsEnvironment.outputs.id
    identityId: toolsFabrikamIdentity.outputs.id
    registryServer: registry.outputs.loginServer
    exists: toolsFabrikamExists
    imageName: toolsFabrikamImageName
    targetPort: toolsPort
    minReplicas: minReplicas
    maxReplicas: toolsMaxReplicas
    env: concat(serviceEnv, embeddingEnv, [
      {
        name: 'BIND_ADDR'
        value: '0.0.0.0:${toolsPort}'
      }
      {
        name: 'AZURE_CLIENT_ID'
        value: toolsFabrikamIdentity.outputs.clientId
      }
      {
        name: 'COSMOS_DATABASE_NAME'
        value: toolsFabrikamDatabase.outputs.name
      }
      {
        name: 'PUBLIC_BASE_URL'
        value: '${apimUrl}/${edge.routes.fabrikam.path}'
      }
      {
        name: 'MCP_API_AUDIENCE'
        value: replace(join(edge.routes.fabrikam.audiences, ','), edgePlaceholder, apimUrl)
      }
      {
        name: 'ALLOWED_TENANTS'
        value: join(edge.routes.fabrikam.tenants, ',')
      }
      {
        name: 'ALLOWED_HOSTS'
        value: toolsFabrikamHost
      }
      {
        name: 'SEED_ON_STARTUP'
        value: 'true'
      }
      {
        // Fabrikam's own customers under the same ids, as devstack seeds them (0xFAB1CA).
        name: 'SEED_RANDOM'
        value: '16429514'
      }
      {
        name: 'SEED_CUSTOMER_COUNT'
        value: '120'
      }
      {
        name: 'OTEL_SERVICE_NAME'
        value: 'tools-fabrikam'
      }
    ])
  }
  dependsOn: [
    registry
    environmentDns
  ]
}

module agent 'modules/container-app.bicep' = {
  name: 'app-agent'
  scope: rg
  params: {
    name: apps.agent
    location: location
    tags: tags
    serviceName: 'agent'
    environmentId: appsEnvironment.outputs.id
    identityId: agentIdentity.outputs.id
    registryServer: registry.outputs.loginServer
    exists: agentExists
    imageName: agentImageName
    targetPort: agentPort
    minReplicas: minReplicas
    maxReplicas: agentMaxReplicas
    // A question holds its request for up to two minutes of model and tool calls.
    concurrentRequests: 10
    env: concat(serviceEnv, [
      {
        name: 'BIND_ADDR'
        value: '0.0.0.0:${agentPort}'
      }
      {
        name: 'AZURE_CLIENT_ID'
        value: agentIdentity.outputs.clientId
      }
      {
        name: 'COSMOS_DATABASE_NAME'
        value: agentDatabase.outputs.name
      }
      {
        name: 'PUBLIC_BASE_URL'
        value: '${apimUrl}/${edge.routes['contoso-agent'].path}'
      }
      {
        name: 'MCP_API_AUDIENCE'
        value: replace(join(edge.routes['contoso-agent'].audiences, ','), edgePlaceholder, apimUrl)
      }
      {
        name: 'ALLOWED_TENANTS'
        value: join(edge.routes['contoso-agent'].tenants, ',')
      }
      {
        name: 'ALLOWED_HOSTS'
        value: agentHost
      }
      {
        name: 'AZURE_OPENAI_ENDPOINT'
        value: openAi.outputs.endpoint
      }
      {
        name: 'AZURE_OPENAI_CHAT_DEPLOYMENT'
        value: openAi.outputs.chatDeploymentName
      }
      {
        // Inside the network, directly: the edge refuses delegated calls, and needs none.
        name: 'MCP_SERVER_URI'
        value: 'https://${toolsContosoHost}/mcp'
      }
      {
        // Entra on-behalf-of: scope <this>/.default, the Contoso tools application.
        name: 'MCP_SERVER_AUDIENCE'
        value: edge.routes.contoso.scopeAudience
      }
      {
        name: 'TOKEN_EXCHANGE'
        value: 'entra-obo'
      }
      {
        name: 'AGENT_CLIENT_ID'
        value: agentClientId
      }
      {
        // No secret: the agent's managed identity (AZURE_CLIENT_ID) is a federated identity
        // credential of that application, and its token is the exchange's client assertion.
        name: 'AGENT_CLIENT_AUTH'
        value: 'managed_identity'
      }
      {
        name: 'OTEL_SERVICE_NAME'
        value: 'agent-contoso'
      }
    ])
  }
  dependsOn: [
    registry
    environmentDns
  ]
}

module apim 'modules/apim.bicep' = {
  name: 'apim'
  scope: rg
  params: {
    name: apimName
    location: location
    tags: tags
    sku: apimSku
    publisherEmail: apimPublisherEmail
    publisherName: apimPublisherName
    subnetId: network.outputs.apimSubnetId
    logAnalyticsWorkspaceId: monitoring.outputs.id
  }
}

module routes 'modules/apim-routes.bicep' = {
  name: 'apim-routes'
  scope: rg
  params: {
    apimName: apim.outputs.name
    // The URL the apps were given too (PUBLIC_BASE_URL, MCP_API_AUDIENCE): one spelling for both.
    gatewayUrl: apimUrl
    contosoBackendUrl: 'https://${toolsContoso.outputs.fqdn}'
    fabrikamBackendUrl: 'https://${toolsFabrikam.outputs.fqdn}'
    contosoAgentBackendUrl: 'https://${agent.outputs.fqdn}'
  }
  dependsOn: [
    environmentDns
  ]
}

// Read by azd (the registry to push to) and printed for people.
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = registry.outputs.loginServer
output AZURE_CONTAINER_APPS_ENVIRONMENT_ID string = appsEnvironment.outputs.id
output MCP_GATEWAY_URL string = apim.outputs.gatewayUrl
output MCP_CONTOSO_URL string = routes.outputs.mcpUrls.contoso
output MCP_FABRIKAM_URL string = routes.outputs.mcpUrls.fabrikam
output MCP_CONTOSO_AGENT_URL string = routes.outputs.mcpUrls.contosoAgent
output MCP_CONTOSO_SCOPE string = '${edge.routes.contoso.scopeAudience}/.default'
output MCP_FABRIKAM_SCOPE string = '${edge.routes.fabrikam.scopeAudience}/.default'
// The subject of the federated identity credential that lets the experts' application trust
// the agent's identity instead of a secret (README.md, 'Trust the agent's identity').
output AGENT_IDENTITY_PRINCIPAL_ID string = agentIdentity.outputs.principalId
output MCP_CONTOSO_AGENT_SCOPE string = '${edge.routes['contoso-agent'].scopeAudience}/.default'
