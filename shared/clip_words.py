"""Words that are each one token in CLIP's BPE vocabulary (checked against the ViT-L/14 merges, which both SDXL
tokenizers share): the common words of picture prompts. The web app's token estimate charges them one token each,
and the tiny SDXL's tokenizer makes each of them one token, so the tiny profile counts prompts about as SDXL does.
"""

from __future__ import annotations

CLIP_COMMON_WORDS: tuple[str, ...] = tuple("""
    a an the and or but of in on at to from with without by for into onto over under above below behind beside
    between near through across around up down out off as is are was were be been being it its his her their our my
    your this that these those there here who whom whose which what where when while after before then than so very
    too also only just not no yes all each every some many much more most few other another one two three four five
    six seven eight nine ten first second third last next new old young little small tiny big large huge tall short
    long wide deep high low round flat full empty open closed bright dark light soft hard warm cold cool hot wet dry
    clean dirty happy sad angry scared brave kind gentle quiet loud calm wild shy curious sleepy tired proud funny
    silly friendly lonely lost hungry magic magical golden silver wooden stone glass paper metal plastic man woman
    boy girl child children baby kid kids friend friends family mother father mom dad mum brother sister grandma
    grandpa grandmother grandfather king queen prince princess knight wizard witch fairy giant pirate farmer teacher
    doctor chef baker sailor astronaut robot monster dragon unicorn ghost cat cats dog dogs puppy kitten fox bear
    bears bird birds owl duck ducks chicken horse pony cow pig sheep goat rabbit bunny mouse mice rat squirrel deer
    wolf lion tiger elephant giraffe zebra monkey frog turtle fish whale dolphin shark octopus crab snake butterfly
    bee ant spider penguin otter hedgehog raccoon panda koala parrot eagle swan tree trees forest woods wood leaf
    leaves flower flowers grass garden park field meadow hill hills mountain mountains river lake sea ocean beach
    sand island rock rocks cave valley desert jungle snow ice rain storm cloud clouds sky sun moon star stars night
    day morning evening sunset sunrise dawn dusk winter spring summer autumn fall weather wind fog mist rainbow fire
    water earth world planet space house home room kitchen bedroom bed table chair door window wall floor roof
    stairs castle tower bridge road street city town village school shop store market farm barn boat ship train car
    bus bike bicycle plane rocket balloon tent cabin library museum church palace camp hat cap coat jacket dress
    shirt skirt pants shorts jeans sweater scarf boots shoes socks gloves glasses crown cape mask bag backpack
    basket box book books ball toy toys kite lamp lantern candle clock map key cup plate bowl bread cake apple
    apples pie tea milk cookie cookies food picnic umbrella blanket pillow rope ladder sword shield wand flag gift
    letter head face eyes eye nose mouth ear ears hair hand hands arm arms leg legs foot feet tail wings wing fur
    feathers smile beard braids curly straight messy freckles red blue green yellow orange purple pink brown black
    white gray grey color colors colour colours striped spotted dotted run runs running walk walks walking jump
    jumps jumping fly flies flying swim swims swimming climb climbs climbing sit sits sitting stand stands standing
    look looks looking see sees watch watches watching read reads reading play plays playing sing sings dance dances
    dancing sleep sleeps sleeping eat eats eating hold holds holding carry carries give gives find finds found make
    makes build builds ride rides riding hug hugs laugh laughs smiling wave waves waving reach reaches hide hides
    chase chases explore explores meet meets share shares help helps opens picture image illustration painting
    drawing sketch art style scene view shot close portrait landscape background foreground detailed detail simple
    bold vivid vibrant pastel muted cinematic realistic photo photograph render cartoon comic anime page panel story
    watercolor watercolour pencil ink line lines outline outlines texture textures shading shadow shadows lighting
    palette pixel pixels studio quality beautiful cute lovely pretty text letters words writing signature blurry
    extra limbs ugly bad cropped frame border logo glowing sparkling shining cozy wearing together toward towards
    inside outside beneath along against past covered filled made like laughing crying lying floating falling rising
    hanging peeking waiting talking dreaming singing afternoon twilight midnight moonlight sunlight candlelight
    daylight starlight corner edge top bottom middle center front back side left right elderly teenage teen toddler
    girls boys women men people crowd group pair couple twins brick fluffy furry shiny sparkly fuzzy thin thick
    heavy broken hidden secret ancient modern busy crowded peaceful cheerful playful colorful colourful pine oak
    willow maple branch branches roots bush bushes vine vines moss mushroom mushrooms pond stream waterfall shore
    cliff path trail fence gate well bench hoodie apron uniform suit belt bow tie necklace ribbon collar bell
    helmet stripes spots dots patterns pattern lace wool denim leather silk velvet cotton
""".split())
