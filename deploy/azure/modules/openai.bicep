// The Azure OpenAI account: the experts' chat model and, for hybrid knowledge-base search, the
// tools services' embeddings. Keys are switched off (disableLocalAuth): the services send
// Entra tokens of their identities, which hold "Cognitive Services OpenAI User" here (inference
// only: no deployments, no keys). Reached only through its private endpoint.

param name string
param location string
param tags object

param chatDeploymentName string
param chatModelName string
param chatModelVersion string
param chatSkuName string
@description('Thousands of tokens per minute.')
param chatCapacity int

param embeddingsEnabled bool
param embeddingDeploymentName string
param embeddingModelName string
param embeddingModelVersion string
param embeddingSkuName string
param embeddingCapacity int

@description('Principal ids given Cognitive Services OpenAI User.')
param userPrincipalIds array

param privateEndpointSubnetId string
param dnsZoneId string

var openAiUser = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd')

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  properties: {
    // Entra authentication needs the account's own subdomain.
    customSubDomainName: name
    disableLocalAuth: true
    publicNetworkAccess: 'Disabled'
    networkAcls: {
      defaultAction: 'Deny'
    }
  }
}

resource chat 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: chatDeploymentName
  sku: {
    name: chatSkuName
    capacity: chatCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: chatModelName
      version: chatModelVersion
    }
  }
}

// After the chat deployment: an account takes one deployment change at a time.
resource embedding 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = if (embeddingsEnabled) {
  parent: account
  name: embeddingDeploymentName
  sku: {
    name: embeddingSkuName
    capacity: embeddingCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: embeddingModelName
      version: embeddingModelVersion
    }
  }
  dependsOn: [
    chat
  ]
}

resource users 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in userPrincipalIds: {
  name: guid(account.id, principalId, openAiUser)
  scope: account
  properties: {
    roleDefinitionId: openAiUser
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

module endpoint 'private-endpoint.bicep' = {
  name: 'pe-${name}'
  params: {
    name: 'pe-${name}'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    targetResourceId: account.id
    groupId: 'account'
    dnsZoneId: dnsZoneId
  }
}

// AZURE_OPENAI_ENDPOINT: https://<name>.openai.azure.com/
output endpoint string = account.properties.endpoint
output chatDeploymentName string = chat.name
output embeddingDeploymentName string = embeddingsEnabled ? embeddingDeploymentName : ''
