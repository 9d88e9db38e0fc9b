// A private endpoint for one service resource in the network's endpoint subnet, registered in
// the service's private DNS zone, so the resource's usual host name resolves to a private address
// from inside the network while its public access stays disabled.

param name string
param location string
param tags object
param subnetId string

@description('The resource the endpoint connects to.')
param targetResourceId string

@description('The resource\'s sub-resource: Sql for Cosmos DB (NoSQL), account for Azure OpenAI.')
param groupId string

@description('The privatelink DNS zone the endpoint registers in.')
param dnsZoneId string

resource endpoint 'Microsoft.Network/privateEndpoints@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    privateLinkServiceConnections: [
      {
        name: name
        properties: {
          privateLinkServiceId: targetResourceId
          groupIds: [
            groupId
          ]
        }
      }
    ]
  }
}

resource zoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2023-11-01' = {
  parent: endpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: groupId
        properties: {
          privateDnsZoneId: dnsZoneId
        }
      }
    ]
  }
}
