// The container registry azd pushes the images to. No admin user: the apps pull with their own
// identities (AcrPull), and the person deploying pushes with their Entra sign-in (AcrPush).

param name string
param location string
param tags object

@description('Principal ids of the identities that pull images (the services).')
param pullPrincipalIds array

@description('Principal id of the person (or pipeline) that runs azd deploy; empty for none.')
param pushPrincipalId string = ''
param pushPrincipalType string = 'User'

var acrPull = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '7f951dda-4ed3-4680-a7ca-43fe172d538d')
var acrPush = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '8311e382-0749-4cb8-b61a-304f252e45ec')

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Basic'
  }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
    // azd deploy pushes from the deploying machine, outside the private network.
    publicNetworkAccess: 'Enabled'
  }
}

resource pulls 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for principalId in pullPrincipalIds: {
  name: guid(registry.id, principalId, acrPull)
  scope: registry
  properties: {
    roleDefinitionId: acrPull
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource push 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(pushPrincipalId)) {
  name: guid(registry.id, pushPrincipalId, acrPush)
  scope: registry
  properties: {
    roleDefinitionId: acrPush
    principalId: pushPrincipalId
    principalType: pushPrincipalType
  }
}

output name string = registry.name
output loginServer string = registry.properties.loginServer
