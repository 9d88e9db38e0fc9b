// The image a container app runs now, so that provisioning again keeps what `azd deploy` put
// there instead of falling back to the placeholder. A module of its own: a template cannot read
// a resource it also deploys.

param exists bool
param name string

resource app 'Microsoft.App/containerApps@2024-03-01' existing = if (exists) {
  name: name
}

output image string = exists ? app.properties.template.containers[0].image : ''
